"""Checkpoints and exports: damaged or foreign files named in one line, export's folders and
arguments checked first, the crop protocol carried from training to prediction and eval."""

from pathlib import Path

import pytest

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.model.checkpoints import read_checkpoint
from smallnet_lit.model.module import load_model
from smallnet_lit.train import train


def test_corrupt_checkpoint_is_named_everywhere(tmp_path, make_cfg, checkpoint):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.read_bytes()[:5000])
    for load in (read_checkpoint, load_model):
        with pytest.raises(BadInputError, match=f"{bad}: not a readable checkpoint") as err:
            load(bad)
        assert "weights_only" not in str(err.value)
    for key in ("ckpt_path", "init_from"):
        cfg = make_cfg([f"{key}={bad}", "debug=fdr", "data.train.num_faces=8", "data.val.num_faces=4"])
        with pytest.raises(BadInputError, match="not a readable checkpoint"):
            train(cfg)
    from smallnet_lit.export import main as export_main

    assert export_main([str(bad), "--slim", str(tmp_path / "s.ckpt")]) == 2


def test_weights_of_another_network_are_refused_in_one_line(make_cfg, checkpoint):
    """The tiny checkpoint has 68 points and widths 8-16-16; the run wants 98 points and 8-16-24."""
    for key in ("ckpt_path", "init_from"):
        cfg = make_cfg([f"{key}={checkpoint}", "model.net.widths=[8,16,24]", "debug=fdr"])
        with pytest.raises(BadInputError, match=r"network differs") as err:
            train(cfg)
        message = str(err.value)
        assert "\n" not in message and "num_points 98 here vs 68 there" in message
        assert "widths [8, 16, 24] here vs [8, 16, 16] there" in message


def test_a_torchscript_export_given_as_a_checkpoint_is_named(checkpoint, tmp_path):
    import smallnet_lit as sl
    from smallnet_lit.inference.deploy import export_torchscript

    scripted = export_torchscript(load_model(checkpoint).net, tmp_path / "m.pt")
    with pytest.raises(BadInputError, match="a TorchScript export, for deployment"):
        sl.load(scripted)


def test_export_makes_its_folders_and_checks_its_arguments_first(checkpoint, tmp_path):
    from smallnet_lit.export import main as export_main

    out = tmp_path / "new" / "dir" / "m.onnx"
    assert export_main([str(checkpoint), "--onnx", str(out)]) == 0 and out.is_file()
    (tmp_path / "file").write_text("x")
    for args in (
        ["--onnx", str(tmp_path / "file" / "m.onnx")],  # its folder would be under a file
        ["--torchscript", str(tmp_path)],  # a folder, not a file name
        ["--onnx-int8", str(tmp_path / "q.onnx"), "--calibration", str(tmp_path), "--calibration-faces", "0"],
    ):
        with pytest.raises(SystemExit) as exit_:
            export_main([str(checkpoint), *args])
        assert exit_.value.code == 2


def test_the_model_carries_its_crop_protocol_to_prediction_and_eval(make_cfg, tmp_path):
    """A model trained with another eval crop is predicted and evaluated with that crop."""
    from smallnet_lit.export import main as export_main
    from smallnet_lit.inference.predictor import LandmarkPredictor
    from smallnet_lit.model.checkpoints import model_protocol

    cfg = make_cfg(
        [
            "data.eval_crop.scale=1.4",
            "trainer.max_epochs=1",
            "test=false",
            "data.train.num_faces=8",
            "data.val.num_faces=4",
        ]
    )
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert model_protocol(read_checkpoint(ckpt)["hyper_parameters"])["crop_scale"] == pytest.approx(1.4)
    assert export_main([str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 0
    for model in (ckpt, tmp_path / "m.onnx"):
        predictor = LandmarkPredictor(model)
        assert predictor.crop.scale == pytest.approx(1.4) and predictor.protocol["pixel_std"] == 64.0
    # checkpoints from before the protocol was stored: the protocol they were trained with
    assert model_protocol({})["crop_scale"] == 1.2
