import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from smallnet_lit.data.crop import apply_affine
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.ibug import IbugFaces, read_pts
from smallnet_lit.data.images import read_image
from smallnet_lit.data.wflw import WFLWFaces, annotation_path
from tests.helpers.faces import SHARED_DATA, write_pts


def test_wflw_reader_reads_points_boxes_attributes(wflw_root):
    train, test = WFLWFaces(wflw_root, "train"), WFLWFaces(wflw_root, "test")
    assert len(train) == 12 and len(test) == 8
    sample = test.load(0)
    assert sample.points.shape == (98, 2) and sample.box.shape == (4,)
    assert sample.key.startswith("0--Event/test_0.jpg")
    assert [r.attributes[0] for r in test.records[:4]] == [0, 1, 0, 1]
    assert test.records[0].attributes[4] == 1 and test.attribute_names[4] == "occlusion"


def test_wflw_subset_files_define_the_subsets(wflw_root):
    lines = annotation_path(wflw_root, "test").read_text().splitlines()
    subset_dir = wflw_root / "WFLW_annotations" / "list_98pt_test"
    subset_dir.mkdir()
    (subset_dir / "list_98pt_test_blur.txt").write_text(lines[3] + "\n" + lines[5] + "\n")
    test = WFLWFaces(wflw_root, "test")
    assert [int(r.attributes[5]) for r in test.records] == [0, 0, 0, 1, 0, 1, 0, 0]


def test_missing_wflw_says_where_it_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="WFLW_annotations.tar.gz"):
        WFLWFaces(tmp_path / "nowhere")


def _corrupt_line(root, lineno, new_line):
    path = annotation_path(root, "train")
    lines = path.read_text().splitlines()
    lines[lineno - 1] = new_line(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_line_names_file_and_line(wflw_root):
    path = _corrupt_line(wflw_root, 3, lambda line: " ".join(line.split()[:150]))
    with pytest.raises(BadInputError, match=rf"{path}:3: expected 207 fields .* got 150"):
        WFLWFaces(wflw_root, "train")


def test_non_number_and_nan_are_named(wflw_root):
    path = _corrupt_line(wflw_root, 2, lambda line: "abc " + " ".join(line.split()[1:]))
    _corrupt_line(wflw_root, 5, lambda line: "nan " + " ".join(line.split()[1:]))
    with pytest.raises(BadInputError) as err:
        WFLWFaces(wflw_root, "train")
    assert f"{path}:2: field 1 'abc' is not a number" in str(err.value)
    assert f"{path}:5: coordinates or box include NaN or inf" in str(err.value)


def test_skip_keeps_every_good_face_and_counts_the_bad(wflw_root, caplog):
    _corrupt_line(wflw_root, 4, lambda line: line.replace(line.split()[0], "inf", 1))
    faces = WFLWFaces(wflw_root, "train", on_bad_sample="skip")
    assert len(faces) == 11
    assert "1 bad sample(s), 11 good" in caplog.text


def test_all_missing_images_are_listed(wflw_root):
    for name in ("train_1.jpg", "train_4.jpg"):
        (wflw_root / "WFLW_images" / "1--Event" / name).unlink()
    with pytest.raises(BadInputError) as err:
        WFLWFaces(wflw_root, "train")
    assert "train_1.jpg: image not found" in str(err.value) and "train_4.jpg: image not found" in str(err.value)
    assert "2 bad sample(s), 10 good" in str(err.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_images_are_caught_by_the_cache_pass(wflw_root, tmp_path, damage):
    image = wflw_root / "WFLW_images" / "2--Event" / "train_2.jpg"
    data = image.read_bytes()
    image.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a jpeg" * 50, "empty": b""}[damage])
    with pytest.raises(BadInputError, match="train_2.jpg"):
        WFLWFaces(wflw_root, "train", cache={"dir": str(tmp_path / "cache")})
    faces = WFLWFaces(wflw_root, "train", cache={"dir": str(tmp_path / "cache")}, on_bad_sample="skip")
    assert len(faces) == 11


def test_image_formats_are_read_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[..., 0])
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[..., ::-1], np.full((20, 30), 128, np.uint8)]))
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    grey, rgba, deep = (read_image(tmp_path / n) for n in ("grey.png", "rgba.png", "deep.png"))
    assert grey.shape == rgba.shape == deep.shape == (20, 30, 3)
    np.testing.assert_array_equal(grey[..., 1], rgb[..., 0])
    np.testing.assert_array_equal(rgba, rgb)
    np.testing.assert_array_equal(deep, rgb)


def test_landmarks_off_the_image_are_rejected_but_a_few_are_kept(wflw_root, tmp_path):
    def shift(line, dx):
        f = line.split()
        coords = [f"{float(v) + (dx if i % 2 == 0 else 0):.3f}" for i, v in enumerate(f[:196])]
        return " ".join(coords + f[196:])

    _corrupt_line(wflw_root, 1, lambda line: shift(line, 1000))
    with pytest.raises(BadInputError, match="98 of 98 landmarks lie outside the 160x160 image"):
        WFLWFaces(wflw_root, "train", cache={"dir": str(tmp_path / "c")})


def test_cache_is_reused_and_maps_back_to_photo_pixels(wflw_root, tmp_path):
    cache = {"dir": str(tmp_path / "cache"), "size": 256}
    a = WFLWFaces(wflw_root, "test", cache=cache)
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1
    stamp = (folders[0] / "faces.bin").stat().st_mtime_ns
    b = WFLWFaces(wflw_root, "test", cache=cache)
    assert (folders[0] / "faces.bin").stat().st_mtime_ns == stamp
    sample, plain = b.load(3), WFLWFaces(wflw_root, "test").load(3)
    back = apply_affine(sample.to_photo, sample.points)
    np.testing.assert_allclose(back, plain.points, atol=1e-6)
    assert len(a) == len(b) == 8


def test_pts_files_with_and_without_header(tmp_path):
    pts = np.arange(136, dtype=float).reshape(68, 2)
    write_pts(tmp_path / "a.pts", pts, header=True)
    write_pts(tmp_path / "b.pts", pts, header=False)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), pts)
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts"), pts)
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n3 x\n}\n")
    with pytest.raises(BadInputError, match=r"c.pts:5: expected 'x y', got '3 x'"):
        read_pts(tmp_path / "c.pts")


def test_ibug_split_is_by_photo_seeded_and_complete(ibug_root):
    kw = dict(val_fraction=0.3, split_seed=4)
    train, val, all_ = (IbugFaces(ibug_root, split=s, **kw) for s in ("train", "val", "all"))
    assert len(train) + len(val) == len(all_) == 20
    assert not set(train.split_groups) & set(val.split_groups)
    assert len(val) > 0 and len(train) > 0
    assert [r.key for r in IbugFaces(ibug_root, split="val", **kw).records] == [r.key for r in val.records]
    for r in val.records:  # both faces of a photo on the same side
        assert r.key.replace("_1.", "_2.") in {v.key for v in val.records} | {r.key}
    # logs and cache keys name the folder read (a YouTube Faces folder was logged as "300w-train")
    assert (train.name, IbugFaces(ibug_root, name="mine").name) == (f"{ibug_root.name}-train", "mine-all")


def test_ibug_include_exclude_globs(ibug_root):
    assert len(IbugFaces(ibug_root, include=["afw/**"])) == 10
    assert len(IbugFaces(ibug_root, exclude=["afw/**"])) == 10
    with pytest.raises(FileNotFoundError, match="no .pts files"):
        IbugFaces(ibug_root, include=["lfpw/**"])


def test_ibug_wrong_point_count_and_missing_image(ibug_root):
    bad = next(ibug_root.rglob("*_1.pts"))
    write_pts(bad, np.zeros((5, 2)))
    lonely = ibug_root / "afw" / "lonely.pts"
    shutil.copy(next(ibug_root.rglob("*_2.pts")), lonely)
    with pytest.raises(BadInputError) as err:
        IbugFaces(ibug_root)
    assert f"{bad}: 5 landmarks, the ibug68 scheme has 68" in str(err.value)
    assert f"{lonely}: no image beside it" in str(err.value)


@pytest.mark.shared_data
def test_real_wflw_sample_and_300w_faces(tmp_path):
    wflw = WFLWFaces(SHARED_DATA / "wflw-sample", "test", cache={"dir": str(tmp_path)})
    assert len(wflw) == 4
    sample = wflw.load(0)
    assert sample.image.shape == (384, 384, 3)
    ibug = IbugFaces(SHARED_DATA / "300w-train", include=["afw/**"])
    assert len(ibug) == 337
    assert Path(ibug.records[0].image_path).suffix == ".jpg"


def test_bad_input_errors_carry_file_and_line_as_fields(tmp_path):
    (tmp_path / "c.pts").write_text("version: 1\n{\n1 2\n3 x\n}\n")
    with pytest.raises(BadInputError) as err:
        read_pts(tmp_path / "c.pts")
    assert (err.value.path, err.value.line, err.value.what) == (tmp_path / "c.pts", 4, "expected 'x y', got '3 x'")
    assert str(err.value) == f"{tmp_path / 'c.pts'}:4: expected 'x y', got '3 x'"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_read_as_displayed_by_their_exif_orientation(tmp_path, orientation):
    """Phone photos are stored sideways with an EXIF tag: read what a viewer shows (Pillow's exif_transpose)."""
    from PIL import Image, ImageOps

    stored = np.random.default_rng(orientation).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    with Image.open(tmp_path / "photo.png") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    image = read_image(tmp_path / "photo.png")
    assert image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image, displayed)
    assert image.shape == ((30, 20, 3) if orientation >= 5 else (20, 30, 3))
