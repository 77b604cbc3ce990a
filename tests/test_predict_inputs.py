"""smallnet-predict and sl.load on the inputs users give: box files written by hand or by a
spreadsheet, mistyped paths, output folders inside the input, links, odd videos, outputs
that cannot be written (issue "Reliability, second round")."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from smallnet_lit.data.synthetic import render_face
from smallnet_lit.inference.detect import BoxLookup, read_boxes
from smallnet_lit.inference.predictor import FaceLandmarks, box_problem
from smallnet_lit.predict import main as predict_main
from tests.helpers.faces import synthetic_photo


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture
def photos(tmp_path):
    """photos/a.jpg and photos/sub/b.jpg with their landmark boxes."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    boxes = {}
    for name, seed in (("a.jpg", 0), ("sub/b.jpg", 1)):
        truth = synthetic_photo(folder / name, seed=seed)
        boxes[name] = [*truth.min(0).tolist(), *truth.max(0).tolist()]
    return folder, boxes


def test_box_entries_match_the_paths_users_write(photos, tmp_path, monkeypatch):
    folder, boxes = photos
    monkeypatch.chdir(tmp_path)
    lookup = BoxLookup({k: np.array([v]) for k, v in {
        str((folder / "a.jpg").resolve()): boxes["a.jpg"],  # absolute
        "./PHOTOS/SUB/B.JPG": boxes["sub/b.jpg"],  # ./ and another case
    }.items()})  # fmt: skip
    assert lookup.get(Path("photos/a.jpg"), "a.jpg") is not None
    assert lookup.get(Path("photos/sub/b.jpg"), "sub/b.jpg") is not None
    assert lookup.unused() == []
    # the path predictions.jsonl prints, and a part of it relative to a parent folder
    printed = BoxLookup({"photos/sub/b.jpg": np.array([boxes["sub/b.jpg"]]), "sub/b.jpg": np.array([[0, 0, 9, 9]])})
    assert len(printed.get(Path("photos/sub/b.jpg"), "b.jpg")) == 1  # the most specific entry
    assert printed.unused() == ["sub/b.jpg"]
    video = BoxLookup({"vid/clip.mp4:0": np.array([[0, 0, 9, 9]])})
    assert video.get(Path("vid/clip.mp4"), "clip.mp4", frame=0) is not None
    assert video.get(Path("vid/clip.mp4"), "clip.mp4", frame=1) is None


def test_box_entries_that_match_no_input_are_listed_and_exit_1(photos, checkpoint, tmp_path):
    folder, boxes = photos
    (tmp_path / "boxes.json").write_text(json.dumps({"a.jpg": [boxes["a.jpg"]], "typo.jpg": [boxes["a.jpg"]]}))
    out = tmp_path / "out"
    code = predict_main(
        [str(folder), "--model", str(checkpoint), "--out", str(out), "--boxes", str(tmp_path / "boxes.json")]
    )
    assert code == 1
    faces = {Path(r["image"]).name: len(r["faces"]) for r in _rows(out)}
    assert faces == {"a.jpg": 1, "b.jpg": 0}


def test_spreadsheet_csv_with_a_byte_order_mark_and_empty_box_files(tmp_path):
    (tmp_path / "bom.csv").write_bytes("image,x_min,y_min,x_max,y_max\na.jpg,1,2,30,40\n".encode("utf-8-sig"))
    np.testing.assert_array_equal(read_boxes(tmp_path / "bom.csv")["a.jpg"], [[1, 2, 30, 40]])
    (tmp_path / "header.csv").write_text("image,x_min,y_min,x_max,y_max\n")
    (tmp_path / "empty.csv").write_text("")
    for name in ("header.csv", "empty.csv"):
        with pytest.raises(ValueError, match=f"{name}: no boxes"):
            read_boxes(tmp_path / name)


def test_a_mistyped_input_keeps_the_earlier_results(photos, checkpoint, tmp_path):
    folder, _ = photos
    out = tmp_path / "out"
    assert predict_main([str(folder / "a.jpg"), "--model", str(checkpoint), "--out", str(out)]) == 0
    before = (out / "predictions.jsonl").read_text()
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(tmp_path / "no_such_folder"), "--model", str(checkpoint), "--out", str(out)])
    assert exit_.value.code == 2
    assert (out / "predictions.jsonl").read_text() == before


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_output_folder_that_cannot_be_one_is_a_usage_error(photos, checkpoint, tmp_path, where):
    folder, _ = photos
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "pred"
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(folder), "--model", str(checkpoint), "--out", str(out)])
    assert exit_.value.code == 2


def test_output_folder_inside_the_input_is_not_read_back(photos, checkpoint, monkeypatch, caplog):
    folder, _ = photos
    monkeypatch.chdir(folder)
    for _ in range(2):  # the second run must not read the first run's overlays
        assert predict_main([".", "--model", str(checkpoint), "--detector", "haar"]) == 0
        assert sorted(r["image"] for r in _rows(folder / "predictions")) == ["a.jpg", "sub/b.jpg"]
    assert not (folder / "predictions" / "overlays" / "predictions").exists()
    empty = folder / "empty"
    empty.mkdir()
    assert predict_main([str(empty), "--model", str(checkpoint), "--out", str(folder / "o2")]) == 0
    assert "no images or videos" in caplog.text


def test_symlinked_subfolders_are_followed_and_loops_end(photos, checkpoint, tmp_path):
    folder, _ = photos
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    synthetic_photo(elsewhere / "c.jpg", seed=2)
    os.symlink(elsewhere, folder / "linked")
    os.symlink(folder, folder / "sub" / "loop")
    out = tmp_path / "out"
    assert predict_main([str(folder), "--model", str(checkpoint), "--out", str(out), "--detector", "haar"]) == 0
    names = sorted(Path(r["image"]).relative_to(folder).as_posix() for r in _rows(out))
    assert names == ["a.jpg", "linked/c.jpg", "sub/b.jpg"]


def _video(path: Path, frames: int = 10, size: int = 120) -> None:
    image, _ = render_face(np.random.default_rng(3), size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    for t in range(frames):
        writer.write(np.roll(image, t, axis=1)[..., ::-1].copy())
    writer.release()


def test_videos_of_one_stem_keep_their_own_overlay_video(checkpoint, tmp_path):
    _video(tmp_path / "clip.avi")
    _video(tmp_path / "clip.mkv", frames=6)
    out = tmp_path / "out"
    args = [str(tmp_path / "clip.avi"), str(tmp_path / "clip.mkv"), "--model", str(checkpoint), "--out", str(out)]
    assert predict_main([*args, "--detector", "haar", "--redetect-every", "100"]) == 0
    counts = sorted(int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in out.glob("*_landmarks.mp4"))
    assert counts == [6, 10]


def test_a_truncated_video_is_reported(checkpoint, tmp_path):
    _video(tmp_path / "clip.avi", frames=30)
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "clip.avi").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert (
        predict_main([str(tmp_path / "clip.avi"), "--model", str(checkpoint), "--out", str(out), "--detector", "haar"])
        == 1
    )
    rows = _rows(out)
    assert any("truncated" in r.get("error", "") for r in rows)
    assert 0 < sum("frame" in r for r in rows) < 30


def test_an_overlay_that_cannot_be_written_is_reported(checkpoint, tmp_path):
    long_name = "x" * 248 + ".png"  # overlays/<name>.jpg goes past 255 bytes
    synthetic_photo(tmp_path / long_name)
    out = tmp_path / "out"
    code = predict_main(
        [str(tmp_path / long_name), "--model", str(checkpoint), "--out", str(out), "--detector", "haar"]
    )
    assert code == 1
    assert len(_rows(out)) == 1  # the prediction itself is kept


def test_api_arguments_are_checked(checkpoint, tmp_path):
    import smallnet_lit as sl

    for bad in (-5, 0, 2.5):
        with pytest.raises(ValueError, match="min_face"):
            sl.load(checkpoint, min_face=bad)
    truth = synthetic_photo(tmp_path / "face.jpg")
    model = sl.load(checkpoint)
    box = [*truth.min(0), *truth.max(0)]
    assert len(model(tmp_path / "face.jpg", boxes=box)) == 1  # one box as a flat list
    for shape in ((2, 5), (2, 6), (3,)):
        with pytest.raises(ValueError, match=r"boxes must be \(N, 4\)"):
            model(tmp_path / "face.jpg", boxes=np.ones(shape))


def test_the_python_api_tracks_a_video_file_or_frames(checkpoint, tmp_path):
    import smallnet_lit as sl
    from smallnet_lit.model.landmarks import WFLW98_TO_IBUG68

    image, points = render_face(np.random.default_rng(1), 160)
    frames = [np.roll(image, t, axis=1).copy() for t in range(8)]
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 160))
    for frame in frames:
        writer.write(frame[..., ::-1].copy())
    writer.release()
    pts = points[WFLW98_TO_IBUG68]
    model = sl.load(checkpoint)
    model.detector = lambda rgb: np.array([[*pts.min(0), *pts.max(0)]])  # a detector that finds the face
    from_frames = list(model.track(frames, fps=25, redetect_every=4, smooth="none"))
    from_file = list(model.track(tmp_path / "clip.avi", redetect_every=4, smooth="none"))
    assert len(from_frames) == len(from_file) == 8 and all(len(f) == 1 for f in from_frames + from_file)
    assert from_frames[0][0].points.shape == (68, 2)
    with pytest.raises(ValueError, match="frame 0: expected an RGB uint8"):
        next(model.track([np.zeros((10, 10))]))
    with pytest.raises(ValueError, match="not a readable video"):
        (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
        next(model.track(tmp_path / "bad.mp4"))


def test_predict_keeps_relative_paths_apart(checkpoint, tmp_path):
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


def test_predict_argument_and_model_errors_exit_2_and_keep_old_results(checkpoint, tmp_path):
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


def test_boxes_without_area_or_off_the_image_are_rejected_and_reported(checkpoint, tmp_path):
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
