"""Face profiling: the 3D fit, the turned face and its labels, and the command that writes a
profiled iBUG folder. The mean 3D face here is the synthetic renderer's template (no shared data)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.profiling import FaceLeavesPhoto, ProfilingError, fit_pose, load_mean_face, profile_face
from smallnet_lit.tools.profile_faces import main as profile_main
from tests.helpers.faces import SHARED_DATA, write_ibug, write_mean_face


@pytest.fixture
def mean_face_file(tmp_path):
    return write_mean_face(tmp_path / "mean_face_68.txt")


def _project(face, yaw, pitch=0.0, scale=60.0, centre=(100.0, 110.0)):
    import cv2

    rot = cv2.Rodrigues(np.array([[math.radians(pitch)], [math.radians(yaw)], [0.0]]))[0]
    return scale * (face @ rot.T)[:, :2] + centre, rot


@pytest.mark.parametrize("yaw", [-50.0, -20.0, 0.0, 35.0])
def test_the_fit_recovers_scale_and_pose_of_a_projected_face(mean_face_file, yaw):
    face = load_mean_face(mean_face_file)
    points, rot = _project(face, yaw, pitch=10.0)
    fit = fit_pose(points, face)
    assert fit.residual < 1e-3 and fit.scale == pytest.approx(60.0, rel=1e-3)
    np.testing.assert_allclose(fit.rotation, rot, atol=1e-3)
    assert abs(fit.yaw_pitch_roll[0]) == pytest.approx(abs(yaw), abs=0.5)


def test_faces_that_cannot_be_fitted_are_refused_with_the_reason(mean_face_file):
    face = load_mean_face(mean_face_file)
    points, _ = _project(face, 0.0)
    with pytest.raises(ProfilingError, match="too small"):
        fit_pose(points * 0.1, face)
    line = np.stack([np.linspace(0, 200, 68), np.linspace(0, 100, 68)], 1)
    with pytest.raises(ProfilingError, match="line"):
        fit_pose(line, face)
    scrambled = np.random.default_rng(0).permutation(points)
    with pytest.raises(ProfilingError, match="far from any pose"):
        fit_pose(scrambled, face)
    with pytest.raises(ProfilingError, match="68 finite"):
        fit_pose(points[:60], face)


def test_a_turned_face_has_the_new_yaw_and_its_far_jaw_on_the_outline(mean_face_file):
    face = load_mean_face(mean_face_file)
    points, _ = _project(face, 5.0)
    image = np.random.default_rng(0).integers(0, 255, (220, 200, 3), dtype=np.uint8)
    turned = profile_face(image, points, face, yaw_delta=40.0)
    assert turned.image.shape == image.shape and turned.points.shape == (68, 2)
    assert turned.yaw == pytest.approx(fit_pose(points, face).yaw_pitch_roll[0] + 40.0, abs=1.0)
    assert not np.array_equal(turned.image, image)
    # The labels other than the jaw are the projected turned points: refitting them gives the yaw.
    refit = fit_pose(turned.points, face)
    assert refit.yaw_pitch_roll[0] > 20
    again = profile_face(image, points, face, yaw_delta=40.0)
    np.testing.assert_array_equal(again.points, turned.points)  # deterministic


def _coordinate_image(h, w):
    """Each pixel holds its own position (x, y) in two channels: a warp's source is readable."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 255.0 / (w - 1), ys * 255.0 / (h - 1), np.zeros_like(xs, float)], -1).astype(np.uint8)


def test_a_face_filling_its_photo_turns_with_its_texture_or_is_refused(mean_face_file):
    face = load_mean_face(mean_face_file)
    points, _ = _project(face, 0.0, scale=70.0, centre=(100.0, 100.0))
    points -= points.min(0) - 15  # the photo ends 15 px past the face: the still ring is off it
    h, w = (np.ceil(points.max(0)) + 15).astype(int)[::-1]
    image = _coordinate_image(h, w)
    turned = profile_face(image, points, face, yaw_delta=12.0)
    # The nose tip's pixel in the turned photo comes from the nose tip of the original: the face's
    # texture moved with its labels (a mesh folded at the photo's border left it behind).
    nose_new, nose_old = turned.points[30], points[30]
    colour = turned.image[int(round(nose_new[1])), int(round(nose_new[0]))].astype(float)
    source_xy = colour[:2] / 255.0 * [w - 1, h - 1]
    assert np.abs(source_xy - nose_old).max() < 6.0, (source_xy, nose_old, nose_new)
    assert abs(nose_new[0] - nose_old[0]) > 5  # it did turn
    with pytest.raises(FaceLeavesPhoto, match="leaves the photo: .* of 68 points outside"):
        profile_face(image, points, face, yaw_delta=60.0)


def test_profile_faces_writes_an_ibug_folder_of_training_faces_only(mean_face_file, tmp_path):
    source = write_ibug(tmp_path / "src", n_photos=10, faces_per_photo=1, size=160)
    out = tmp_path / "profiled"
    args = [str(source), str(out), "--mean-face", str(mean_face_file), "--copies", "2", "--contact-sheet", "4"]
    assert profile_main(args) == 0
    summary = json.loads((out / "profiling.json").read_text())
    train = IbugFaces(source, split="train")
    written = summary["profiled_images"] + 2 * summary["skipped"] + summary["skipped_copies"]
    assert summary["faces"] == len(train) and written == 2 * len(train)
    profiled = IbugFaces(out)  # a source data=faces68 can take
    assert len(profiled) == summary["profiled_images"] > 0
    val_stems = {p.stem for p in (source).rglob("*.pts")} - {r.image_path.stem for r in train.records}
    assert not any(r.image_path.stem.rsplit("_p", 1)[0] in val_stems for r in profiled.records)
    assert (out / "contact_sheet.jpg").is_file()
    first = (out / "profiling.json").read_text()
    assert profile_main(args) == 0 and (out / "profiling.json").read_text() == first  # seeded
    pts = sorted(out.rglob("*.pts"))[0].read_text()
    assert profile_main(args) == 0 and sorted(out.rglob("*.pts"))[0].read_text() == pts


@pytest.mark.shared_data
def test_the_shared_mean_face_fits_real_faces_closely():
    face = load_mean_face(SHARED_DATA / "3d" / "mean_face_68.txt")
    faces = IbugFaces(SHARED_DATA / "300w-train", include=["afw/**"])
    residuals = [fit_pose(r.points, face).residual for r in faces.records[:50]]
    assert np.median(residuals) < 0.08


def test_profiled_faces_train_only_and_never_validate(tmp_path):
    from smallnet_lit.data.mix import ibug_mix

    real = write_ibug(tmp_path / "real", n_photos=10, faces_per_photo=1, size=120)
    profiled = write_ibug(tmp_path / "profiled", n_photos=6, faces_per_photo=1, size=120)
    sources = {"real": {"root": str(real)}, "profiled": {"root": str(profiled), "train_only": True, "weight": 0.3}}
    train, val = ibug_mix(sources, "train"), ibug_mix(sources, "val")
    assert len(train) == len(IbugFaces(real, split="train")) + 6  # every profiled face trains
    assert len(val) == len(IbugFaces(real, split="val"))  # and none validates


def test_turned_faces_can_validate_instead_of_training(mean_face_file, tmp_path):
    from smallnet_lit.data.profiling import head_yaw

    root = write_ibug(tmp_path / "faces", n_photos=30, faces_per_photo=1, size=120)
    face = load_mean_face(mean_face_file)
    kw = dict(turned_to_val=20.0, mean_face=mean_face_file)
    plain_val, val, train = (
        IbugFaces(root, split="val"),
        IbugFaces(root, split="val", **kw),
        IbugFaces(root, split="train", **kw),
    )
    keys = lambda faces: {r.key for r in faces.records}  # noqa: E731
    turned = {r.key for r in IbugFaces(root).records if head_yaw(r.points, face) >= 20}
    assert turned and turned <= keys(val) and keys(plain_val) <= keys(val)
    assert not keys(train) & keys(val) and len(train) + len(val) == 30


def test_profile_faces_follows_the_sources_split_rule(mean_face_file, tmp_path):
    """LFPW-style folders (image_XXXX, one face a file) split file by file, as data=faces68 does."""
    root = tmp_path / "lfpw"
    write_ibug(tmp_path / "gen", n_photos=12, faces_per_photo=1, size=120)
    root.mkdir()
    for i, pts in enumerate(sorted((tmp_path / "gen").rglob("*.pts"))):
        for suffix in (".pts", ".jpg"):
            (root / f"image_{i:04d}{suffix}").write_bytes(pts.with_suffix(suffix).read_bytes())
    out = tmp_path / "out"
    args = [str(root), str(out), "--mean-face", str(mean_face_file), "--copies", "1", "--contact-sheet", "0"]
    assert profile_main([*args, "--photo-suffix", "none"]) == 0
    train = {r.image_path.stem for r in IbugFaces(root, split="train", photo_suffix=None).records}
    profiled = {p.stem.rsplit("_p", 1)[0] for p in out.glob("*.pts")}
    turned_out = {
        Path(k.split(" copy ")[0]).stem for k in json.loads((out / "profiling.json").read_text())["skipped_copy_list"]
    }
    assert profiled | turned_out == train and not profiled & turned_out and len(train) < 12


def test_profiled_copies_made_with_another_split_are_refused(mean_face_file, tmp_path):
    """Profiled without --turned-to-val, a source holds copies of faces that validate once the mix
    sets turned_to_val: the mix refuses it (the validation would be silently optimistic)."""
    from smallnet_lit.data.errors import BadInputError
    from smallnet_lit.data.mix import ibug_mix

    real = write_ibug(tmp_path / "real", n_photos=12, faces_per_photo=1, size=160)
    out = tmp_path / "profiled"
    made = [str(real), str(out), "--mean-face", str(mean_face_file), "--copies", "1", "--contact-sheet", "0"]
    assert profile_main(made) == 0
    turned = {"turned_to_val": 20.0, "mean_face": str(mean_face_file)}
    sources = {"real": {"root": str(real), **turned}, "prof": {"root": str(out), "train_only": True}}
    with pytest.raises(BadInputError, match=r"profiling.json: .*'prof' was generated from 'real'.*turned_to_val None"):
        ibug_mix(sources, "train")
    assert len(ibug_mix(sources, "val")) > 0  # validation alone reads no generated faces
    assert profile_main([*made, "--turned-to-val", "20"]) == 0
    assert len(ibug_mix(sources, "train")) > 0  # the same split: accepted
    sources["real"]["split_seed"] = 3
    with pytest.raises(BadInputError, match="split_seed 0 there vs 3 here"):
        ibug_mix(sources, "train")
