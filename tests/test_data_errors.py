"""Bad data a user can fix: each problem named with its file, line and what is wrong, skippable
where asked, and one clear message (exit 2, no traceback) where it stops a run."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.images import read_image
from smallnet_lit.train import train


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


def test_when_every_annotation_is_bad_the_error_says_no_face_is_left(ibug_root, tmp_path):
    for pts in ibug_root.rglob("*.pts"):
        pts.write_text("not a pts file\n")
    for on_bad_sample in ("error", "skip"):
        with pytest.raises(BadInputError, match="no usable faces left") as err:
            IbugFaces(ibug_root, on_bad_sample=on_bad_sample, cache={"dir": str(tmp_path / "c")})
        assert "on_bad_sample=skip" not in str(err.value)


def test_a_missing_dataset_is_one_message_and_exit_2_without_a_traceback(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [sys.executable, "-m", "smallnet_lit.train", "+experiment=baseline", f"data.root={tmp_path / 'nowhere'}"]
    run = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "WFLW not found" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr + run.stdout
