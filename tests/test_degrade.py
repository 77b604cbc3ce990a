"""Video-like copies of generated faces: the points move exactly with the shrunk image, faces
end up YouTube-Faces small, and the command keeps the split record the mix checks."""

import json

import numpy as np
import pytest

from smallnet_lit.data.degrade import VideoLike, degrade, face_size
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.tools.degrade_faces import main as degrade_main
from smallnet_lit.tools.profile_faces import main as profile_main
from tests.helpers.faces import write_ibug, write_mean_face


def _ramps(height=300, width=400):
    """Red holds the column, green the row (scaled to 0-255): the image says where a pixel is."""
    cols = np.broadcast_to(np.linspace(0, 255, width), (height, width))
    rows = np.broadcast_to(np.linspace(0, 255, height)[:, None], (height, width))
    return np.stack([cols, rows, np.zeros_like(cols)], -1).round().astype(np.uint8)


def _bilinear(image, x, y):
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(float)
    return (patch[0, 0] * (1 - fx) + patch[0, 1] * fx) * (1 - fy) + (patch[1, 0] * (1 - fx) + patch[1, 1] * fx) * fy


def test_the_points_move_exactly_with_the_shrunk_image():
    image = _ramps()
    points = np.array([[60.0, 50.0], [340.0, 250.0], [200.5, 149.5], [123.25, 201.75]])
    frame = degrade(image, points, np.random.default_rng(0), VideoLike(face_px=(80, 80), blur=0.0))
    assert frame.scale == pytest.approx(80 / face_size(points), rel=0.02)
    assert face_size(frame.points) == pytest.approx(80, rel=0.02)
    for before, after in zip(points, frame.points, strict=True):
        # The ramp read at the moved point gives back the original position (within a level).
        red, green = _bilinear(frame.image, *after)[:2]
        assert red == pytest.approx(before[0] * 255 / 399, abs=1.0)
        assert green == pytest.approx(before[1] * 255 / 299, abs=1.0)


def test_faces_already_small_keep_their_size_and_the_draws_are_seeded():
    image = _ramps()
    small = np.array([[150.0, 150.0], [190.0, 180.0]])  # 50 px: below every drawn size
    how = VideoLike(face_px=(60, 180), blur=1.0)
    frame = degrade(image, small, np.random.default_rng(1), how)
    assert frame.scale == 1.0 and frame.image.shape == image.shape and np.allclose(frame.points, small)
    assert 30 <= frame.quality <= 80
    again = degrade(image, small, np.random.default_rng(1), how)
    assert np.array_equal(frame.image, again.image) and frame.quality == again.quality
    sizes = [face_size(degrade(image, small * 4, np.random.default_rng(s), how).points) for s in range(40)]
    assert min(sizes) >= 60 * 0.98 and max(sizes) <= 180 * 1.02 and np.std(sizes) > 10


@pytest.mark.parametrize(
    "bad", [dict(face_px=(0, 10)), dict(face_px=(90, 60)), dict(blur=1.5), dict(jpeg=(0, 50)), dict(jpeg=(80, 30))]
)
def test_bad_ranges_are_refused(bad):
    with pytest.raises(ValueError):
        VideoLike(**bad)


def test_degrade_faces_writes_small_copies_and_keeps_the_split_record(tmp_path, caplog):
    from smallnet_lit.data.errors import BadInputError
    from smallnet_lit.data.mix import ibug_mix

    mean_face = write_mean_face(tmp_path / "mean_face_68.txt")
    real = write_ibug(tmp_path / "real", n_photos=10, faces_per_photo=1, size=400)
    profiled, video = tmp_path / "profiled", tmp_path / "video"
    profile_args = [str(real), str(profiled), "--mean-face", str(mean_face), "--copies", "1", "--contact-sheet", "0"]
    assert profile_main(profile_args) == 0
    args = [str(profiled), str(video), "--face-px", "40", "60", "--contact-sheet", "3"]
    assert degrade_main(args) == 0
    before, after = IbugFaces(profiled), IbugFaces(video)
    assert [r.key for r in before.records] == [r.key for r in after.records]
    assert all(38 <= face_size(r.points) <= 62 for r in after.records)
    record = json.loads((video / "profiling.json").read_text())
    made = json.loads((profiled / "profiling.json").read_text())
    assert record["source"] == made["source"] and record["settings"] == made["settings"]
    assert record["degraded"]["written"] == len(before) and (video / "contact_sheet.jpg").is_file()
    first = sorted(video.rglob("*.pts"))[0].read_text()
    assert degrade_main(args) == 0 and sorted(video.rglob("*.pts"))[0].read_text() == first  # seeded
    # The copies inherit the profiled folder's split: validated with another one, they are refused.
    sources = {
        "real": {"root": str(real), "turned_to_val": 20.0, "mean_face": str(mean_face)},
        "video": {"root": str(video), "train_only": True},
    }
    with pytest.raises(BadInputError, match="'video' was generated from 'real'"):
        ibug_mix(sources, "train")
    # A real folder holds validation faces: refused, with the reason.
    assert degrade_main([str(real), str(tmp_path / "out")]) == 2
    assert "no profiling.json" in caplog.text
