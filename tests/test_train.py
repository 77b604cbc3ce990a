import json
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from omegaconf import open_dict

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.model.module import LandmarkModule, load_model
from smallnet_lit.train import train
from smallnet_lit.training.config import config_dir
from tests.helpers.faces import SHARED_DATA, write_ibug
from tests.helpers.runs import run_eval

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
# Recipes of earlier runs that the sweep scripts name (composed, not trained, here).
ARCHIVED = sorted(f"archive/{p.stem}" for p in (Path(config_dir()) / "experiment" / "archive").glob("*.yaml"))

# A training run that only has to work (not learn): the synthetic set's 4,000 faces took a
# minute and more a run.
ONE_SHORT_EPOCH = ["trainer.max_epochs=1", "data.train.num_faces=64", "data.val.num_faces=16", "test=false"]


def data_overrides(experiment: str, tmp_path: Path) -> list[str]:
    """Point experiments that read files at generated data of their format (read from the
    composed config: its data reader and sources)."""
    from tests.conftest import compose_config
    from tests.helpers.faces import write_mean_face, write_wflw

    cfg = compose_config("train", [f"+experiment={experiment}"], tmp_path / "compose")
    reader = cfg.data.get("train", {}).get("_target_", "")
    if "WFLW" in reader or "wflw" in reader:
        return [f"data.root={write_wflw(tmp_path / 'WFLW', 6, 4)}"]
    if "sources" in cfg.data:
        overrides = []
        for name, source in cfg.data.sources.items():
            root = write_ibug(tmp_path / name, 6, 2)
            overrides += [f"data.sources.{name}.root={root}"]
            if source.get("mean_face"):  # head poses (data.turned_to_val) from a generated mean face
                overrides += [f"data.sources.{name}.mean_face={write_mean_face(tmp_path / 'mean_face_68.txt')}"]
            overrides += [] if source.get("train_only") else [f"data.sources.{name}.val_fraction=0.3"]
        # the teacher of a distilled experiment is a trained model: tested in test_sources.py
        return overrides + (["model.distill=null"] if cfg.model.get("distill") else [])
    if "Ibug" in reader or "ibug" in reader:
        return [f"data.root={write_ibug(tmp_path / '300w', 6, 2)}", "data.val_fraction=0.3"]
    return ["data.train.num_faces=8", "data.val.num_faces=4", "data.test.num_faces=4"]


def logged_val_nme(run: Path) -> list[float]:
    """val/nme of every validation epoch, from the run's CSV log."""
    rows = [line.split(",") for line in (run / "csv" / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("val/nme")
    return [float(r[col]) for r in rows[1:] if r[col]]


@pytest.mark.parametrize("experiment", EXPERIMENTS + ARCHIVED)
def test_every_experiment_composes(make_cfg, experiment):
    cfg = make_cfg([f"+experiment={experiment}"], tiny=False)
    from smallnet_lit.model.landmarks import get_scheme
    from smallnet_lit.training.instantiate import model_from

    model = model_from(cfg.model, cfg.data.scheme)  # the composed network builds, for the data's scheme
    assert model.net.num_points == get_scheme(cfg.data.scheme).num_points
    assert cfg.model.optimizer._target_.startswith("torch.optim.")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_fast_dev_run(make_cfg, tmp_path, experiment):
    cfg = make_cfg([f"+experiment={experiment}", "debug=fdr", *data_overrides(experiment, tmp_path)])
    metrics = train(cfg)
    assert "val/nme" in metrics
    assert ("test/nme" in metrics) == (cfg.data.test is not None)


def test_unknown_experiment_is_a_clear_error(make_cfg):
    with pytest.raises(ConfigCompositionException, match="experiment/nope"):
        make_cfg(["+experiment=nope"])


def test_negative_learning_rate_is_a_clear_error(make_cfg):
    cfg = make_cfg(["debug=fdr", "model.optimizer.lr=-0.1", "data.train.num_faces=8", "data.val.num_faces=4"])
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        train(cfg)


def test_mismatched_points_are_a_clear_error(make_cfg):
    """The point count is the data's scheme's; a model config that says otherwise is refused."""
    with pytest.raises(ValueError, match="model.net.num_points=68 does not match the wflw98 scheme"):
        train(make_cfg(["+model.net.num_points=68"]))
    with pytest.raises(ValueError, match="model.scheme='ibug68' but the data's landmarks follow 'wflw98'"):
        train(make_cfg(["+model.scheme=ibug68"]))
    with pytest.raises(InstantiationException, match="data.scheme='ibug68' but the data's landmarks follow 'wflw98'"):
        train(make_cfg(["data.scheme=ibug68"]))


def test_configs_link_one_way(make_cfg, tmp_path):
    """Data configs read nothing of the model's (train.py passes the input size in), and
    the model config nothing of the data's (the scheme and attribute names are passed in)."""
    from omegaconf import OmegaConf

    from smallnet_lit.training.config import config_dir

    for path in Path(config_dir()).rglob("*.yaml"):
        text = path.read_text()
        if "/data" in str(path) or path.parent.name == "data_common":
            assert "${model." not in text, path
        if path.parent.name == "model" or "/model/" in str(path):
            assert "${data." not in text, path
    faces = write_ibug(tmp_path / "faces", 4, 1)
    cfg = make_cfg(
        ["data=faces68", "~data.sources.lfpw", "~data.sources.ytf68", f"data.sources.ibug300w.root={faces}"]
        + ["data.sources.ibug300w.val_fraction=0.5"]
    )
    assert OmegaConf.select(cfg, "data.cache.size") is None  # null: twice the input size, set in code
    from smallnet_lit.training.instantiate import datamodule_from

    assert datamodule_from(cfg.data, 96, only_split="val").input_size == 96
    assert cfg.data.cache.size == 192


def test_unknown_config_key_is_rejected(make_cfg):
    with pytest.raises(ConfigCompositionException, match="widht"):
        make_cfg(["model.net.widht=3"])


@pytest.mark.slow
def test_short_training_lowers_nme_and_checkpoint_reloads_identically(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "model/optimizer=adamw",
            "model.optimizer.lr=0.003",
            "data.train.num_faces=256",
            "data.val.num_faces=64",
            "data.test.num_faces=32",
            "data.batch_size=16",
            "trainer.max_epochs=6",
            "model.net.widths=[16,32,32]",
        ]
    )
    metrics = train(cfg)
    nme = logged_val_nme(tmp_path / "run")
    assert len(nme) == 6
    assert nme[-1] < 0.85 * nme[0], f"val NME did not fall: {nme}"
    assert metrics["val/nme_best"] == pytest.approx(min(nme), rel=1e-5)

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # fine-tuning starts from the weights: with lr 0 it validates exactly as the last epoch
    tune = make_cfg(
        [
            "model/optimizer=adamw",
            "model.optimizer.lr=0",
            "model.optimizer.weight_decay=0",
            f"init_from={ckpt}",
            "data.train.num_faces=16",
            "data.val.num_faces=64",
            "trainer.max_epochs=1",
            "model.net.widths=[16,32,32]",
            "test=false",
        ]
    )
    with open_dict(tune):
        tune.paths.output_dir = str(tmp_path / "tune")
    assert train(tune)["val/nme"] == pytest.approx(nme[-1], rel=1e-5)
    model = load_model(str(ckpt))
    images = torch.randn(3, 3, 64, 64)
    trained = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    again = load_model(str(ckpt))
    p1, s1 = model(images)
    p2, s2 = again(images)
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    assert set(trained) == set(model.state_dict())

    # evaluation of the checkpoint writes the three outputs and matches the test metric
    result, _ = run_eval(make_cfg, tmp_path / "eval", ckpt, ["data.test.num_faces=32"])
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["faces"] == 32 and written["test/nme"] == pytest.approx(result["test/nme"])
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 32 and len(first["points"]) == 98 and len(first["sigma"]) == 98
    assert (tmp_path / "eval" / "ced.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_and_evaluate_on_real_300w_and_wflw_sample(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "data=ibug300w",
            f"data.root={SHARED_DATA / '300w-train'}",
            "data.include=[afw/**]",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=5",
            "test=false",
        ]
    )
    metrics = train(cfg)
    assert 0 < metrics["val/nme"] < 10
    split = json.loads((tmp_path / "run" / "data_split.json").read_text())
    assert split["train"] and split["val"] and not set(split["train"]) & set(split["val"])

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result, out = run_eval(
        make_cfg,
        tmp_path / "eval300w",
        ckpt,
        [
            "data=ibug300w",
            "split=val",
            f"data.root={SHARED_DATA / '300w-train'}",
            "data.include=[afw/**]",
            f"data.cache.dir={tmp_path / 'c'}",
        ],
    )
    written = json.loads((out / "metrics.json").read_text())
    assert len((out / "predictions.jsonl").read_text().splitlines()) == written["faces"] > 0
    assert 0 < result["val/nme"] < 10 and 0 <= written["uncertainty"]["within_2_sigma"] <= 1


@pytest.mark.shared_data
def test_evaluate_on_the_real_wflw_sample(make_cfg, tmp_path):
    cfg = make_cfg(
        ["trainer.max_steps=2", "trainer.max_epochs=1", "data.train.num_faces=8", "data.val.num_faces=4", "test=false"]
    )
    train(cfg)
    result, out = run_eval(
        make_cfg,
        tmp_path / "eval",
        tmp_path / "run" / "checkpoints" / "last.ckpt",
        ["data=wflw", "split=test", f"data.root={SHARED_DATA / 'wflw-sample'}", f"data.cache.dir={tmp_path / 'c'}"],
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["image"] for r in rows} == {
        "36--Football/36_Football_americanfootball_ball_36_415.jpg",
        "7--Cheering/7_Cheering_Cheering_7_16.jpg",
    }
    assert len(rows[0]["points"]) == 98
    assert "test/nme_pose" in result and (out / "ced.png").is_file()


# README / weights README: shipped weights on the 300-W validation split (soft decoding).
SHIPPED_VAL_NME = {
    "smallnet_300w": 0.0308,
    "smallnet_300w_fast": 0.0318,
    "smallnet_300w_small": 0.0327,
    "smallnet_300w_tiny": 0.0347,
}
# README: GMACs of each shipped model at its own input size (the product line's cost tiers).
SHIPPED_GMACS = {
    "smallnet_300w": 0.396,
    "smallnet_300w_fast": 0.182,
    "smallnet_300w_small": 0.100,
    "smallnet_300w_tiny": 0.050,
}


def test_shipped_models_are_the_documented_product_line():
    from smallnet_lit.model.checkpoints import WEIGHTS_DIR, shipped_names
    from smallnet_lit.model.module import load_model
    from smallnet_lit.model.net import count_macs

    assert set(shipped_names()) == set(SHIPPED_GMACS) == set(SHIPPED_VAL_NME)
    assert {p.stem for p in WEIGHTS_DIR.glob("*.onnx")} == set(SHIPPED_GMACS)  # each with its int8 export
    for name, gmacs in SHIPPED_GMACS.items():
        assert count_macs(load_model(name).net) / 1e9 == pytest.approx(gmacs, abs=0.0005), name
    # the two PFLD-GhostOne-cost tiers of issue "Small again": within 0.10 and 0.05 GMACs
    assert count_macs(load_model("smallnet_300w_small").net) <= 0.10e9
    assert count_macs(load_model("smallnet_300w_tiny").net) <= 0.05e9


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(SHIPPED_VAL_NME))
def test_shipped_checkpoint_scores_its_documented_nme_on_real_300w(make_cfg, tmp_path, name):
    """The 68-point weights in the package, on the seeded validation split of the real
    300-W faces (never trained on)."""
    from smallnet_lit.inference.predictor import resolve_model

    result, out = run_eval(
        make_cfg,
        tmp_path / "eval",
        resolve_model(name),
        ["data=ibug300w", "split=val", f"data.root={SHARED_DATA / '300w-train'}", f"data.cache.dir={tmp_path / 'c'}"],
    )
    assert json.loads((out / "metrics.json").read_text())["faces"] == 132
    assert result["val/nme"] < SHIPPED_VAL_NME[name] + 0.001
    assert result["val/fr"] == 0.0


def test_csv_and_tensorboard_logging_together(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "logger=many",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
            "data.train.num_faces=8",
            "data.val.num_faces=4",
            "data.test.num_faces=4",
        ]
    )
    train(cfg)
    run = tmp_path / "run"
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/nme" in header and "train/loss_conf" in header and "train/loss_loc" in header
    assert (run / "overlays_test.jpg").is_file() and (run / "ced_test.png").is_file()


def test_best_nme_ignores_the_sanity_check_and_survives_a_resume(make_cfg, tmp_path):
    # lr 20 wrecks the weights in the first epoch, so the real epoch scores far worse than the
    # untrained sanity-check batches: the best must still come from real epochs only.
    cfg = make_cfg(
        [
            "trainer.max_epochs=1",
            "+trainer.num_sanity_val_steps=1",
            "model.optimizer.lr=20",
            "callbacks.early_stopping=null",
            "trainer.gradient_clip_val=null",
            "data.train.num_faces=8",
            "data.val.num_faces=4",
            "test=false",
        ]
    )
    metrics = train(cfg)
    nme = logged_val_nme(tmp_path / "run")
    assert len(nme) == 1 and nme[0] > 1  # the untrained sanity batches score about 0.7
    assert metrics["val/nme_best"] == pytest.approx(min(nme), rel=1e-6)

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["val_nme_best"] == pytest.approx(min(nme), rel=1e-6)
    fresh = LandmarkModule(**ckpt["hyper_parameters"])
    fresh.on_load_checkpoint(ckpt)
    assert float(fresh.val_nme_best.compute()) == pytest.approx(min(nme), rel=1e-6)


def test_last_ckpt_holds_the_final_epoch_even_when_it_is_not_the_best(make_cfg, tmp_path):
    # lr 0: every epoch validates the same, so no epoch after the first is a new best.
    cfg = make_cfg(
        ["model.optimizer.lr=0", "trainer.max_epochs=3", "data.train.num_faces=8", "data.val.num_faces=4", "test=false"]
    )
    train(cfg)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 2
    assert [p.name for p in checkpoints.glob("epoch_*.ckpt")] == ["epoch_000.ckpt"]


def test_ema_weights_are_what_validation_and_checkpoints_use(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "trainer.max_epochs=2",
            "data.train.num_faces=16",
            "data.val.num_faces=8",
            "test=false",
            "callbacks.ema={_target_: lightning.pytorch.callbacks.EMAWeightAveraging, decay: 0.5}",
        ]
    )
    metrics = train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged if k.endswith("weight"))
    # the checkpoint's weights are the averaged ones, and they score the logged validation NME
    from smallnet_lit.model.module import load_model

    model = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert torch.equal(model.net.head.weight, averaged["net.head.weight"])
    result, _ = run_eval(
        make_cfg,
        tmp_path / "eval",
        tmp_path / "run" / "checkpoints" / "last.ckpt",
        ["split=val", "data.val.num_faces=8"],
    )
    assert result["val/nme"] == pytest.approx(metrics["val/nme"], rel=1e-4)


def test_neighbour_regression_trains_reloads_and_exports(make_cfg, tmp_path):
    import numpy as np
    import onnxruntime as ort

    from smallnet_lit.inference.deploy import Deployable, export_onnx

    cfg = make_cfg(["model.net.neighbours=4", "model.loss.neighbour_weight=0.5", *ONE_SHORT_EPOCH])
    train(cfg)
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_neighbours" in header
    net = load_model(str(tmp_path / "run" / "checkpoints" / "last.ckpt")).net.eval()
    assert net.neighbours == 4 and net.neighbour_index.shape == (98, 4)
    onnx_path = export_onnx(net, tmp_path / "nb.onnx", "wflw98")
    x = torch.randn(3, 3, net.input_size, net.input_size)
    ref = [t.detach().numpy() for t in Deployable(net)(x)]
    for r, o in zip(ref, ort.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()}), strict=True):
        np.testing.assert_allclose(o, r, atol=1e-4, rtol=0)


def test_finer_head_grid_trains_reloads_and_exports(make_cfg, tmp_path):
    import numpy as np
    import onnxruntime as ort

    from smallnet_lit.inference.deploy import Deployable, export_onnx, export_onnx_int8, export_torchscript

    cfg = make_cfg(["model.net.head_stride=4", *ONE_SHORT_EPOCH])
    train(cfg)
    net = load_model(str(tmp_path / "run" / "checkpoints" / "last.ckpt")).net.eval()
    assert net.stride == 4 and net.grid_size == 16  # 64 px input, three stages: stride 8 by default
    onnx_path = export_onnx(net, tmp_path / "fine.onnx", "wflw98")
    x = torch.randn(3, 3, net.input_size, net.input_size)
    ref = [t.detach().numpy() for t in Deployable(net)(x)]
    for r, o in zip(ref, ort.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()}), strict=True):
        np.testing.assert_allclose(o, r, atol=1e-4, rtol=0)
    # int8: the upsampled level passes through ONNX Runtime's quantization tools too
    int8_path = export_onnx_int8(net, tmp_path / "fine_int8.onnx", "wflw98", x.numpy())
    points = ort.InferenceSession(str(int8_path)).run(None, {"image": x.numpy()})[0]
    assert points.shape == (3, 98, 2) and np.isfinite(points).all()
    scripted = torch.jit.load(str(export_torchscript(net, tmp_path / "fine.pt")))
    np.testing.assert_allclose(scripted(x)[0].detach().numpy(), ref[0], atol=1e-4, rtol=0)


def test_init_from_takes_a_shipped_models_name(make_cfg):
    """`init_from=smallnet_300w_fast` starts the fast recipe's network from the shipped weights."""
    from smallnet_lit.train import start_from
    from smallnet_lit.training.instantiate import model_from

    cfg = make_cfg(["+experiment=faces68_fast", "model.distill=null"], tiny=False)
    model = model_from(cfg.model, "ibug68")
    start_from(model, "smallnet_300w_fast")
    shipped = load_model("smallnet_300w_fast")
    for key, value in shipped.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="model not found: smallnet_nope"):
        start_from(model, "smallnet_nope")


def test_init_from_reads_the_shipped_convs_at_another_input_size(make_cfg, checkpoint):
    """Every conv reads any input and the head grid's pooling has no weights: a smaller-input
    net starts from the shipped fast model's weights (docs/results.md: runs F80, F64); resuming
    (ckpt_path) still wants the very network."""
    from smallnet_lit.train import check_network, start_from
    from smallnet_lit.training.instantiate import model_from

    cfg = make_cfg(["+experiment=faces68_fast", "model.distill=null", "model.net.input_size=80"], tiny=False)
    with open_dict(cfg):
        cfg.model.net.head_stride = 8
    model = model_from(cfg.model, "ibug68")
    start_from(model, "smallnet_300w_fast")
    shipped = load_model("smallnet_300w_fast")
    for key, value in shipped.net.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[key], value, rtol=0, atol=0)
    model.eval()
    maps = model.net.forward_maps(torch.zeros(1, 3, 80, 80))
    assert model.net.grid_size == 10 and maps.scores.shape[-2:] == (10, 10)
    theirs = torch.load(checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]["net"]
    bigger = LandmarkModule(net={**theirs, "input_size": 2 * theirs["input_size"]}, scheme="ibug68")
    start_from(bigger, str(checkpoint))  # fine-tuning at another size: allowed
    with pytest.raises(BadInputError, match=r"network differs from this run.s: input_size 128 here vs 64 there$"):
        check_network(bigger, torch.load(checkpoint, map_location="cpu", weights_only=False), "ckpt_path=x")


def test_init_from_a_deeper_net_keeps_each_stages_first_convs(make_cfg):
    """A stage with fewer convs starts from the source stage's first ones (run F96: the shipped
    fast net without its first stage's second conv); a deeper net is refused."""
    from smallnet_lit.train import start_from
    from smallnet_lit.training.instantiate import model_from

    def fast(depths: str):
        cfg = make_cfg(["+experiment=faces68_fast", "model.distill=null", f"model.net.depths={depths}"], tiny=False)
        with open_dict(cfg):
            cfg.model.net.input_size, cfg.model.net.head_stride = 96, 8
        return model_from(cfg.model, "ibug68")

    model = fast("[1,3,4,2]")
    start_from(model, "smallnet_300w_fast")
    shipped = load_model("smallnet_300w_fast").net.state_dict()
    ours = model.net.state_dict()
    assert all(not k.startswith("stages.0.3.") for k in ours)  # the cut conv is gone
    for key, value in ours.items():
        torch.testing.assert_close(value, shipped[key], rtol=0, atol=0)
    assert {k for k in shipped if k not in ours} == {k for k in shipped if k.startswith(("stages.0.3.", "stages.0.4."))}
    with pytest.raises(BadInputError, match=r"depths \[3, 3, 4, 2\] here vs \[2, 3, 4, 2\] there"):
        start_from(fast("[3,3,4,2]"), "smallnet_300w_fast")


def test_init_from_a_plain_net_with_batchnorm_into_norm_false_folds_it(make_cfg):
    """`init_from=smallnet_300w_tiny model.net.norm=false` (quantization-aware fine-tuning needs
    the net without BatchNorm): each BatchNorm is folded into its conv, the same outputs."""
    from smallnet_lit.train import start_from
    from smallnet_lit.training.instantiate import model_from

    at_64 = ["model.net.input_size=64", "model.net.head_stride=8"]
    cfg = make_cfg(["+experiment=faces68_fast", "model.distill=null", "model.net.norm=false", *at_64], tiny=False)
    model = model_from(cfg.model, "ibug68")
    start_from(model, "smallnet_300w_tiny")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    shipped = load_model("smallnet_300w_tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.eval().net.forward_maps(x), shipped.net.forward_maps(x)
    torch.testing.assert_close(ours.scores, theirs.scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.offsets, theirs.offsets, atol=1e-4, rtol=0)


def test_init_from_a_plain_net_grows_repvgg_branches(make_cfg, checkpoint):
    """`init_from=smallnet_300w_fast model.net.reparam=true`: the shipped convs become the
    branches' main convs and the net starts computing exactly what the shipped one does (run
    F96LR); a checkpoint without BatchNorm cannot carry the branches and is refused by name."""
    from smallnet_lit.train import start_from
    from smallnet_lit.training.instantiate import model_from

    cfg = make_cfg(["+experiment=faces68_fast", "model.distill=null", "model.net.reparam=true"], tiny=False)
    model = model_from(cfg.model, "ibug68")
    start_from(model, "smallnet_300w_fast")
    shipped = load_model("smallnet_300w_fast")
    model.eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ours, theirs = model.net.forward_maps(x), shipped.net.forward_maps(x)
        torch.testing.assert_close(ours.scores, theirs.scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.offsets, theirs.offsets, atol=1e-5, rtol=0)
    theirs_net = torch.load(checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]["net"]
    tiny = LandmarkModule(net={**theirs_net, "reparam": True}, scheme="ibug68")
    with pytest.raises(
        BadInputError, match=r"init_from=.*tiny.ckpt: RepVGG branches grow on a plain net with BatchNorm"
    ):
        start_from(tiny, str(checkpoint))
