"""Flip offset: annotation files whose points sit a constant number of photo pixels right of the
pixel grid's mirror axis keep that convention through flips (training and the flip test), the
offset is found in eval's bias_x_px, and generated folders take their source's offset."""

import json
import types

import numpy as np
import pytest
import torch

from smallnet_lit.data.crop import CropConfig, apply_affine, invert_affine
from smallnet_lit.data.faces import FaceDataset
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.mix import ibug_mix
from smallnet_lit.model.landmarks import IBUG68
from smallnet_lit.training.evaluate import average_with_flip, bias_report
from tests.helpers.faces import write_ibug

OFFSET = 1.5  # photo pixels


@pytest.mark.parametrize("cache", [None, "cached"])
def test_a_flipped_face_keeps_its_points_on_the_files_side(tmp_path, cache):
    root = write_ibug(tmp_path / "faces", n_photos=4, faces_per_photo=1, size=200)
    cache_cfg = {"dir": str(tmp_path / "cache"), "size": 96} if cache else None
    for offset in (0.0, OFFSET):
        faces = IbugFaces(root, cache=cache_cfg, flip_offset=offset)
        for flip in (0.0, 1.0):
            data = FaceDataset(faces, 64, CropConfig(flip=flip), augment=True)
            item = data[0]
            truth = faces.records[0].points - [offset, 0.0]  # where the content is, in the photo
            photo_to_input = invert_affine(item["to_photo"].numpy().astype(np.float64))
            content = apply_affine(photo_to_input, truth)
            if flip:
                content = content[IBUG68.flip_permutation]
            k = abs(photo_to_input[0, 0])
            # Flipped or not, the points sit offset x the crop's scale right of their content.
            gap = item["points"].numpy() - content
            assert np.allclose(gap, [k * offset, 0.0], atol=1e-3), (offset, flip, gap[:2])
            assert item["mirror_shift"].item() == pytest.approx(k * offset, rel=1e-5)


def test_the_flip_test_keeps_the_offset_a_model_learned():
    """A stand-in model that reads the bright column of its input and answers `shift` pixels
    right of it (as a model taught a flip offset does): the flip test's mean stays there."""
    size, column, shift = 32, 9, 1.25

    def read(images):
        x = images[:, 0, 0].argmax(-1).float()  # (B,)
        points = torch.zeros(images.shape[0], IBUG68.num_points, 2)
        points[..., 0] = x[:, None] + shift
        return points, torch.ones(images.shape[0], IBUG68.num_points)

    model = types.SimpleNamespace(scheme=IBUG68)
    model.__call__ = read
    images = torch.zeros(1, 3, size, size)
    images[..., column] = 1.0
    points, sigma = read(images)
    fake = lambda x: read(x)  # noqa: E731
    fake.scheme = IBUG68
    kept, _ = average_with_flip(fake, images, points, sigma, torch.tensor([shift]))
    lost, _ = average_with_flip(fake, images, points, sigma)
    assert torch.allclose(kept[..., 0], torch.tensor(column + shift))
    assert torch.allclose(lost[..., 0], torch.tensor(float(column)))  # without it: half lost


def test_bias_report_gives_the_mean_signed_error_per_source():
    rows = [{"offset_px": [-1.0, 0.5]}, {"offset_px": [-3.0, 0.5]}, {"offset_px": [1.0, -1.0]}]
    report = bias_report(rows, np.array([0, 0, 1]), ["a", "b"], "val")
    assert report["val/bias_x_px"] == pytest.approx(-1.0) and report["val/bias_y_px"] == pytest.approx(0.0)
    assert report["val/a/bias_x_px"] == pytest.approx(-2.0) and report["val/b/bias_y_px"] == pytest.approx(-1.0)


def test_generated_folders_take_the_offset_of_the_source_they_were_made_from(tmp_path):
    real = write_ibug(tmp_path / "real", n_photos=6, faces_per_photo=1, size=120)
    made = write_ibug(tmp_path / "profiled", n_photos=4, faces_per_photo=1, size=120)
    shrunk = write_ibug(tmp_path / "video", n_photos=4, faces_per_photo=1, size=120)
    other = write_ibug(tmp_path / "other", n_photos=4, faces_per_photo=1, size=120)
    record = {"source": str(real), "split": "train", "settings": {"val_fraction": 0.1, "split_seed": 0}}
    (made / "profiling.json").write_text(json.dumps(record))
    (shrunk / "profiling.json").write_text(json.dumps({**record, "degraded": {"scale_mean": 0.4}}))
    sources = {
        "real": {"root": str(real), "flip_offset": OFFSET},
        "profiled": {"root": str(made), "train_only": True},
        "video": {"root": str(shrunk), "train_only": True},
        "other": {"root": str(other), "train_only": True},
        "own": {"root": str(made), "train_only": True, "flip_offset": 0.25},
    }
    mix = ibug_mix(sources, "train")
    offsets = dict(zip(mix.names, (part.flip_offset for part in mix.parts), strict=True))
    assert offsets == pytest.approx(
        {"real": OFFSET, "profiled": OFFSET, "video": 0.4 * OFFSET, "other": 0, "own": 0.25}
    )
    first_of = {name: int(start) for name, start in zip(mix.names, mix._starts, strict=False)}
    assert mix.load(first_of["video"]).flip_offset == pytest.approx(0.4 * OFFSET)


def test_a_label_offset_moves_every_point_in_prediction_and_eval(checkpoint, make_cfg, tmp_path):
    """An offset eval fits (label_offset.json) and smallnet-export stores is added to every point,
    by the torch and ONNX predictors and by eval, whose bias then moves by as much."""
    import cv2

    from smallnet_lit.export import main as export_main
    from smallnet_lit.inference.predictor import LandmarkPredictor
    from tests.helpers.faces import synthetic_photo
    from tests.helpers.runs import run_eval

    faces = write_ibug(tmp_path / "faces", n_photos=6, faces_per_photo=1)
    data = ["data=ibug300w", f"data.root={faces}", "split=all", f"data.cache.dir={tmp_path / 'cache'}"]
    before, out = run_eval(make_cfg, tmp_path / "before", checkpoint, data)
    fitted = json.loads((out / "label_offset.json").read_text())
    assert fitted["offset_x"] == pytest.approx(-before["all/bias_x_px"], abs=1e-3)
    assert fitted["offset_y"] == pytest.approx(-before["all/bias_y_px"], abs=1e-3)
    offset = tmp_path / "offset.json"
    offset.write_text(json.dumps({"offset_x": 1.25, "offset_y": -0.5}))
    slim, onnx = tmp_path / "slim.ckpt", tmp_path / "slim.onnx"
    assert export_main([str(checkpoint), "--slim", str(slim), "--onnx", str(onnx), "--label-offset", str(offset)]) == 0
    truth = synthetic_photo(tmp_path / "a.jpg")
    image = cv2.imread(str(tmp_path / "a.jpg"))[..., ::-1].copy()
    box = np.concatenate([truth.min(0), truth.max(0)])[None]
    plain = LandmarkPredictor(checkpoint).predict(image, box)[0].points
    for model in (slim, onnx):
        moved = LandmarkPredictor(model).predict(image, box)[0].points
        np.testing.assert_allclose(moved - plain, np.broadcast_to([1.25, -0.5], plain.shape), atol=2e-3)
    after, _ = run_eval(make_cfg, tmp_path / "after", slim, data)
    assert after["all/bias_x_px"] == pytest.approx(before["all/bias_x_px"] + 1.25, abs=1e-3)
    assert after["all/bias_y_px"] == pytest.approx(before["all/bias_y_px"] - 0.5, abs=1e-3)
    # The flip test: a model that learned the files' offset gets it back from the mirrored crop; one
    # that carries it at its output does not (it read both crops alike), or it would count twice.
    flip = lambda model, files: run_eval(  # noqa: E731
        make_cfg, tmp_path / f"flip{files}{model.stem}", model, [*data, "flip_test=true", f"data.flip_offset={files}"]
    )[0]["all/bias_x_px"]
    plain_flip = flip(checkpoint, 0.0)
    assert flip(checkpoint, 1.5) == pytest.approx(plain_flip + 1.5, abs=1e-3)
    assert flip(slim, 1.5) == pytest.approx(plain_flip + 1.25, abs=1e-3)
    with pytest.raises(SystemExit):  # TorchScript carries no protocol: refused, not dropped
        export_main([str(checkpoint), "--torchscript", str(tmp_path / "m.pt"), "--label-offset", str(offset)])
    offset.write_text(json.dumps({"offset_x": 40.0, "offset_y": 0.0}))  # no convention: refused
    with pytest.raises(SystemExit):
        export_main([str(checkpoint), "--slim", str(tmp_path / "bad.ckpt"), "--label-offset", str(offset)])


def test_bench_speed_scores_a_model_with_its_label_offset(checkpoint, tmp_path, capsys):
    """bench_speed's NME columns add the model's protocol offset, as eval does: the same weights
    exported with an offset score as the plain ones moved by it."""
    from smallnet_lit.export import main as export_main
    from smallnet_lit.model.module import load_model
    from smallnet_lit.tools.bench_speed import export_onnx, int8_accuracy
    from smallnet_lit.tools.bench_speed import main as bench_main

    faces = write_ibug(tmp_path / "faces", n_photos=10, faces_per_photo=1)
    offset, slim = tmp_path / "offset.json", tmp_path / "slim.ckpt"
    offset.write_text(json.dumps({"offset_x": 3.0, "offset_y": -2.0}))
    assert export_main([str(checkpoint), "--slim", str(slim), "--label-offset", str(offset)]) == 0
    bench_main(
        [f"plain={checkpoint}", f"moved={slim}", "--int8-accuracy", str(faces), "--rounds", "1", "--peer", "none"]
    )
    rows = {
        line.split(" | ")[0]: line.split(" | ")[-1] for line in capsys.readouterr().out.splitlines() if " | " in line
    }
    net = load_model(checkpoint).net.eval()
    float_onnx = export_onnx(net, tmp_path / "plain.onnx", "ibug68")
    for name, shift in (("plain", (0.0, 0.0)), ("moved", (3.0, -2.0))):
        expected = int8_accuracy(net, faces, {"float": float_onnx}, shift)["float"]
        assert rows[name].startswith(f"{100 * expected:.2f}% / "), (name, rows[name], expected)
    assert rows["plain"].split(" / ")[0] != rows["moved"].split(" / ")[0]
