"""Defects found by trying the package as a new user would (issue 11): each test failed
before its fix."""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from smallnet_lit.data.cache import TEMP_MARK, CacheConfig
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.images import read_image
from smallnet_lit.inference.predictor import FaceLandmarks, box_problem
from smallnet_lit.model.checkpoints import read_checkpoint
from smallnet_lit.model.module import load_model
from smallnet_lit.predict import main as predict_main
from smallnet_lit.train import train
from tests.helpers.faces import SHARED_DATA, synthetic_photo
from tests.helpers.runs import run_eval


def jpeg_bytes(seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_jpeg_with_bytes_after_its_end_is_read(tmp_path):
    # Phone "motion photos" append a video after the JPEG's end-of-image marker.
    data = jpeg_bytes()
    (tmp_path / "motion.jpg").write_bytes(data + b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    assert read_image(tmp_path / "motion.jpg").shape == (64, 64, 3)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        read_image(tmp_path / "cut.jpg")


def test_unreadable_image_and_pts_are_named_and_skippable(ibug_root, monkeypatch):
    # Running as root ignores file modes, so the OS error is injected where the bytes are read.
    victim_image = next(ibug_root.rglob("*_1.jpg"))
    victim_pts = next(p for p in ibug_root.rglob("*_2.pts") if p.stem[:-2] != victim_image.stem[:-2])
    real_fromfile, real_read_text = np.fromfile, Path.read_text

    def fromfile(path, *a, **k):
        if Path(path) == victim_image:
            raise PermissionError(13, "Permission denied", str(path))
        return real_fromfile(path, *a, **k)

    def read_text(self, *a, **k):
        if self == victim_pts:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *a, **k)

    monkeypatch.setattr(np, "fromfile", fromfile)
    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(BadInputError) as err:
        IbugFaces(ibug_root, cache={"dir": str(ibug_root.parent / "cache")})
    assert f"{victim_image}: cannot read the file (Permission denied)" in str(err.value)
    assert f"{victim_pts}: cannot read the file (Permission denied)" in str(err.value)
    faces = IbugFaces(ibug_root, on_bad_sample="skip", cache={"dir": str(ibug_root.parent / "cache2")})
    assert len(faces) == 18


def test_empty_split_and_bad_sample_hint_say_what_to_do(ibug_root):
    with pytest.raises(FileNotFoundError, match="20 faces under .* match, but none falls in the 'val' split"):
        IbugFaces(ibug_root, split="val", val_fraction=0.001)
    (next(ibug_root.rglob("*.pts"))).write_text("nonsense\n")
    with pytest.raises(BadInputError, match=r"set data.on_bad_sample=skip") as err:
        IbugFaces(ibug_root)
    assert "\\n" not in str(err.value)


def test_bad_data_errors_reach_the_user_as_written(make_cfg, ibug_root):
    # Hydra wraps errors of instantiated targets with repr(), printing "\n" literally.
    (next(ibug_root.rglob("*.pts"))).write_text("nonsense\n")
    cfg = make_cfg(["data=ibug300w", f"data.root={ibug_root}", "data.val_fraction=0.3"])
    with pytest.raises(BadInputError, match="expected 'x y', got 'nonsense'"):
        train(cfg)


def test_corrupt_checkpoint_is_named_everywhere(tmp_path, make_cfg, checkpoint):  # noqa: F811
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


def test_predict_keeps_relative_paths_apart(checkpoint, tmp_path):  # noqa: F811
    photos = tmp_path / "photos"
    for rel in ("a.jpg", "sub/a.jpg", "sub2/a.JPG", "a.png"):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(photos / rel)
    box = [40.0, 40.0, 160.0, 160.0]
    (tmp_path / "boxes.json").write_text(json.dumps({"sub/a.jpg": [box], "a.jpg": [box, box]}))
    out = tmp_path / "out"
    argv = [str(photos), "--model", str(checkpoint), "--out", str(out), "--boxes", str(tmp_path / "boxes.json")]
    assert predict_main(argv) == 0
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.*"))
    assert overlays == ["a.jpg", "a.png.jpg", "sub/a.jpg", "sub2/a.JPG"]
    rows = {r["image"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert len(rows[str(photos / "a.jpg")]["faces"]) == 2  # its own entry, not sub/a.jpg's
    assert len(rows[str(photos / "sub" / "a.jpg")]["faces"]) == 1
    assert len(rows[str(photos / "sub2" / "a.JPG")]["faces"]) == 0  # no entry of its own
    # 0.01 px in the JSON, without float32 noise
    x = rows[str(photos / "a.jpg")]["faces"][0]["points"][0][0]
    assert x == round(x, 2) and len(repr(x)) <= 8


def test_predict_argument_and_model_errors_exit_2_and_keep_old_results(checkpoint, tmp_path):  # noqa: F811
    synthetic_photo(tmp_path / "a.jpg")
    out = tmp_path / "out"
    assert predict_main([str(tmp_path / "a.jpg"), "--model", str(checkpoint), "--out", str(out)]) == 0
    before = (out / "predictions.jsonl").read_text()
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(tmp_path / "a.jpg"), "--model", str(checkpoint), "--out", str(out), "--redetect-every", "0"])
    assert exit_.value.code == 2
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x80\x04garbage")
    assert predict_main([str(tmp_path / "a.jpg"), "--model", str(bad), "--out", str(out)]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    assert predict_main([str(tmp_path / "a.jpg"), "--model", str(tmp_path / "bad.onnx"), "--out", str(out)]) == 2
    assert (out / "predictions.jsonl").read_text() == before


def test_boxes_without_area_or_off_the_image_are_rejected_and_reported(checkpoint, tmp_path):  # noqa: F811
    assert box_problem([10, 10, 10, 50], (100, 100)) and box_problem([500, 500, 600, 600], (100, 100))
    assert box_problem([np.nan, 0, 10, 10], (100, 100)) and box_problem([0, 0, 50, 50], (100, 100)) is None
    synthetic_photo(tmp_path / "a.jpg")
    boxes = {"a.jpg": [[40, 40, 160, 160], [50, 50, 51, 90], [900, 900, 1000, 1000]]}
    (tmp_path / "b.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    argv = [str(tmp_path / "a.jpg"), "--model", str(checkpoint), "--out", str(out), "--boxes", str(tmp_path / "b.json")]
    assert predict_main(argv) == 0
    row = json.loads((out / "predictions.jsonl").read_text())
    assert len(row["faces"]) == 1
    assert [r["problem"][:10] for r in row["rejected_boxes"]] == ["less than ", "mostly out"]


def test_face_json_has_no_float32_noise():
    f = FaceLandmarks(
        np.float32([1.1, 2.2, 3.3, 4.4]), np.float32([[111.968, 5.5]]), np.float32([0.123456]), np.float32([0.5])
    )
    assert json.dumps(f.to_json()["points"]) == "[[111.97, 5.5]]"


def test_demo_experiment_works_with_another_data_config(make_cfg, tmp_path):
    from tests.helpers.faces import write_wflw

    root = write_wflw(tmp_path / "WFLW", 6, 4)
    cfg = make_cfg(["+experiment=demo", "data=wflw", f"data.root={root}", "debug=fdr"])
    assert "val/nme" in train(cfg)


def test_killed_cache_build_leaves_no_half_cache_and_old_caches_are_pruned(ibug_root, tmp_path):
    cache_dir = tmp_path / "cache"
    stale = cache_dir / f"300w-all-0123{TEMP_MARK}999999.abc"  # pid 999999: not running
    stale.mkdir(parents=True)
    (stale / "faces.bin").write_bytes(bytes(100))
    IbugFaces(ibug_root, cache={"dir": str(cache_dir)})
    assert not stale.exists()
    first = [d for d in cache_dir.iterdir()]
    assert len(first) == 1 and (first[0] / "index.json").is_file()
    os.utime(first[0] / "index.json", (1, 1))  # long unused
    # its reader is gone: only a lease of a process that died is left (ignored)
    (first[0] / f"in-use.{os.getpid()}").rename(first[0] / "in-use.999999")
    # another cache, with a limit smaller than both: the older one goes, the new one stays
    IbugFaces(ibug_root, include=["afw/**"], cache=CacheConfig(dir=str(cache_dir), max_gb=1e-9))
    left = [d for d in cache_dir.iterdir()]
    assert len(left) == 1 and left[0] != first[0]


def test_cache_and_shared_data_do_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from smallnet_lit.training.config import config_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    monkeypatch.delenv("SMALLNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=ibug300w"])
    GlobalHydra.instance().clear()
    assert (
        Path(cfg.data.root).resolve() == (Path(config_dir()).parent / ".." / "shared" / "data" / "300w-train").resolve()
    )
    assert cfg.data.cache.dir == str(tmp_path / "xdg" / "smallnet_lit" / "faces")


@pytest.mark.shared_data
def test_eval_scores_every_face_of_a_folder_with_a_shipped_model_name(make_cfg, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for pts in sorted((SHARED_DATA / "300w-train" / "afw").glob("*.pts"))[:12]:
        for suffix in (".pts", ".jpg"):
            shutil.copy(pts.with_suffix(suffix), folder / pts.with_suffix(suffix).name)
    mean_face = f"mean_face={SHARED_DATA / '3d' / 'mean_face_68.txt'}"
    result, out = run_eval(
        make_cfg, tmp_path / "eval", "smallnet_300w", ["data=ibug300w", f"data.root={folder}", mean_face]
    )
    assert json.loads((out / "metrics.json").read_text())["faces"] == 12
    assert 0 < result["all/nme"] < 0.1
    # per yaw bin (the shared mean 3D face fitted to the annotations): every face in one bin
    assert sum(result[f"all/yaw_{b}/faces"] for b in ("0_30", "30_60", "60_90")) == 12
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(0 <= r["yaw"] <= 90 for r in rows)
    # from a detector's boxes, as smallnet-predict crops: found faces + misses = all
    for detector, least_found in (("haar", 7), ("mtcnn", 11)):
        detected, out = run_eval(
            make_cfg,
            tmp_path / detector,
            "smallnet_300w",
            ["data=ibug300w", f"data.root={folder}", f"crop_from={detector}"],
        )
        found = json.loads((out / "metrics.json").read_text())["faces"]
        assert found >= least_found and found == round(12 * (1 - detected["all/not_found"]))
        assert detected["all/nme"] < 0.15
    with pytest.raises(ValueError, match="crop_from must be"):
        run_eval(make_cfg, tmp_path / "bad", "smallnet_300w", ["data=ibug300w", f"data.root={folder}", "crop_from=x"])


def test_pruning_never_deletes_a_cache_another_run_reads(ibug_root, tmp_path):
    """Run A reads its cache while run B, with a tiny data.cache.max_gb, builds another one."""
    import subprocess
    import sys

    cache_dir = tmp_path / "cache"
    reader = (
        "import sys\n"
        "from smallnet_lit.data.ibug import IbugFaces\n"
        f"faces = IbugFaces({str(ibug_root)!r}, cache={{'dir': {str(cache_dir)!r}}})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(sum(faces.load(i).image.size > 0 for i in range(len(faces))), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    run_a = subprocess.Popen(
        [sys.executable, "-c", reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert run_a.stdout.readline().strip() == "ready"
        (cache_a,) = list(cache_dir.iterdir())
        os.utime(cache_a / "index.json", (1, 1))  # the least recently used one
        IbugFaces(ibug_root, include=["afw/**"], cache=CacheConfig(dir=str(cache_dir), max_gb=1e-9))
        assert cache_a.is_dir()  # in use by run A: kept though over the limit
        out, _ = run_a.communicate("go\n", timeout=60)
    finally:
        run_a.kill()
    assert run_a.returncode == 0 and int(out.split()[-1]) > 0


@pytest.mark.parametrize("config", ["train", "eval"])
def test_runs_started_in_the_same_second_get_their_own_run_dirs(config):
    """The run dir holds the process id beside the time: two evals of one second keep both metrics.json."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from smallnet_lit.training.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True)
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    assert run_dir.endswith(f"_{os.getpid()}")


def test_the_cache_size_limit_is_a_config_key():
    from hydra import compose, initialize_config_dir

    from smallnet_lit.training.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=faces68", "data.cache.max_gb=5"])
    assert cfg.data.cache.max_gb == 5


def test_weights_of_another_network_are_refused_in_one_line(make_cfg, checkpoint):  # noqa: F811
    """The tiny checkpoint has 68 points and widths 8-16-16; the run wants 98 points and 8-16-24."""
    for key in ("ckpt_path", "init_from"):
        cfg = make_cfg([f"{key}={checkpoint}", "model.net.widths=[8,16,24]", "debug=fdr"])
        with pytest.raises(BadInputError, match=r"network differs") as err:
            train(cfg)
        message = str(err.value)
        assert "\n" not in message and "num_points 98 here vs 68 there" in message
        assert "widths [8, 16, 24] here vs [8, 16, 16] there" in message


def test_zero_epochs_is_refused_before_any_work(make_cfg):
    with pytest.raises(ValueError, match="max_epochs must be at least 1"):
        train(make_cfg(["trainer.max_epochs=0"]))


def test_an_interrupt_in_the_first_epoch_leaves_last_ckpt(make_cfg, tmp_path):
    """Ctrl-C before the first epoch ends: last.ckpt is written, so the run can resume."""
    import lightning as L

    class CtrlC(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 2:
                raise KeyboardInterrupt

    from smallnet_lit.training import instantiate

    cfg = make_cfg(["data.train_samples_per_epoch=64"])
    original = instantiate.callbacks_from
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("smallnet_lit.train.callbacks_from", lambda c: [*original(c), CtrlC()])
        with pytest.raises(SystemExit):
            train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_export_makes_its_folders_and_checks_its_arguments_first(checkpoint, tmp_path):  # noqa: F811
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


def test_when_every_annotation_is_bad_the_error_says_no_face_is_left(ibug_root, tmp_path):
    for pts in ibug_root.rglob("*.pts"):
        pts.write_text("not a pts file\n")
    for on_bad_sample in ("error", "skip"):
        with pytest.raises(BadInputError, match="no usable faces left") as err:
            IbugFaces(ibug_root, on_bad_sample=on_bad_sample, cache={"dir": str(tmp_path / "c")})
        assert "on_bad_sample=skip" not in str(err.value)


def test_a_torchscript_export_given_as_a_checkpoint_is_named(checkpoint, tmp_path):  # noqa: F811
    import smallnet_lit as sl
    from smallnet_lit.inference.deploy import export_torchscript

    scripted = export_torchscript(load_model(checkpoint).net, tmp_path / "m.pt")
    with pytest.raises(BadInputError, match="a TorchScript export, for deployment"):
        sl.load(scripted)


def test_a_missing_dataset_is_one_message_and_exit_2_without_a_traceback(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [sys.executable, "-m", "smallnet_lit.train", "+experiment=baseline", f"data.root={tmp_path / 'nowhere'}"]
    run = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "WFLW not found" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr + run.stdout


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
