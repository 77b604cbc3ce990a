"""Landmarks on your photos and videos.

    python -m smallnet_lit.predict PATH [PATH ...] [--model CKPT_OR_ONNX] [--out DIR]
                                   [--boxes boxes.json|csv] [--smooth one_euro|sigma|none]

PATH is an image, a folder of images, or a video. Faces are found with the MTCNN detector
(--detector haar: OpenCV's Haar cascade), or taken from --boxes. Writes DIR/predictions.jsonl (one line per image or
video frame: faces with box, points, per-point sigma and confidence, all in image pixels),
overlay images in DIR/overlays/ and, for a video, DIR/<name>_landmarks.mp4.
Inputs that cannot be read are reported and skipped; the exit code is 0 when every input
was read (an image with no face is a result: zero faces), 1 when some could not be read,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.images import IMAGE_SUFFIXES, read_image
from smallnet_lit.detect import DEFAULT_DETECTOR, DETECTORS, box_iou, make_detector, read_boxes
from smallnet_lit.plots import draw_landmarks
from smallnet_lit.predictor import DEFAULT_CHECKPOINT, FaceLandmarks, LandmarkPredictor, box_problem, landmark_box
from smallnet_lit.smoothing import SMOOTHERS, make_smoother

log = logging.getLogger("smallnet_lit.predict")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
MAX_PIXELS = 80_000_000  # refuse decompression bombs before they eat the memory


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="smallnet-predict", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders of images, or videos")
    p.add_argument(
        "--model",
        default=str(DEFAULT_CHECKPOINT),
        help="checkpoint (.ckpt), ONNX file (.onnx) or shipped model name (smallnet_300w, smallnet_300w_fast)",
    )
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    p.add_argument("--boxes", type=Path, help="JSON or CSV of landmark boxes per image name (skips detection)")
    p.add_argument("--smooth", choices=sorted(SMOOTHERS), default="one_euro", help="video smoothing")
    p.add_argument(
        "--detector", choices=list(DETECTORS), default=DEFAULT_DETECTOR, help="face detector (docs/prediction.md)"
    )
    p.add_argument("--min-face", type=int, default=40, help="smallest face the detector looks for, pixels")
    p.add_argument("--redetect-every", type=int, default=10, help="video: run the detector every N frames")
    p.add_argument("--no-overlays", action="store_true", help="write JSON only")
    args = p.parse_args(argv)
    # Checked before any output is touched: a bad value must not cost an earlier result.
    if args.redetect_every < 1:
        p.error(f"--redetect-every must be at least 1, got {args.redetect_every}")
    if args.min_face < 1:
        p.error(f"--min-face must be at least 1 pixel, got {args.min_face}")
    return args


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.predictor = LandmarkPredictor(args.model)
        self.detector = make_detector(args.detector, args.min_face)
        self.boxes = read_boxes(args.boxes) if args.boxes else None
        self.failures: list[str] = []
        args.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(args.out / "predictions.jsonl", "w")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.jsonl.close()

    def given_boxes(self, name: str, path: Path) -> np.ndarray | None:
        """--boxes entries by the image's relative name, else by its file name."""
        found = self.boxes.get(name)
        return found if found is not None else self.boxes.get(path.name)

    def faces_in(self, image: np.ndarray, name: str, path: Path) -> tuple[list[FaceLandmarks], list[dict]]:
        """Faces, and the given boxes that cannot give landmarks (with why)."""
        if self.boxes is not None:
            boxes = self.given_boxes(name, path)
            boxes = np.zeros((0, 4)) if boxes is None else boxes
        else:
            boxes = self.detector(image)
        good, rejected = [], []
        for box in boxes:
            if problem := box_problem(box, image.shape):
                rejected.append({"box": np.round(np.asarray(box, np.float64), 2).tolist(), "problem": problem})
                log.warning("%s: box %s rejected: %s", path, rejected[-1]["box"], problem)
            else:
                good.append(box)
        return self.predictor.predict(image, np.asarray(good, np.float64).reshape(-1, 4)), rejected

    def write(self, record: dict) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def image(self, path: Path, name: str) -> None:
        try:
            check_size(path)
            image = read_image(path)
        except (BadInputError, OSError) as e:
            self.failures.append(str(e))
            self.write({"image": str(path), "error": str(e)})
            log.warning("skipped: %s", e)
            return
        faces, rejected = self.faces_in(image, name, path)
        if not faces:
            log.info("%s: no face found", path)
        record = {"image": str(path), "width": image.shape[1], "height": image.shape[0]}
        record["faces"] = [f.to_json() for f in faces]
        if rejected:
            record["rejected_boxes"] = rejected
        self.write(record)
        if not self.args.no_overlays:
            overlay = image
            for f in faces:
                overlay = draw_landmarks(overlay, f.points, scheme=self.predictor.scheme)
            out = self.args.out / "overlays" / overlay_name(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), overlay[..., ::-1])

    def video(self, path: Path, name: str) -> None:
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            msg = f"{path}: not a readable video (no frame could be decoded)"
            self.failures.append(msg)
            self.write({"video": str(path), "error": msg})
            log.warning("skipped: %s", msg)
            return
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        writer = None
        if not self.args.no_overlays:
            out = self.args.out / f"{Path(name).with_suffix('')}_landmarks.mp4"
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        tracks: list[dict] = []
        index = 0
        with tqdm(total=total, desc=path.name, unit="frame") as bar:
            while ok:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                faces = self.track(rgb, tracks, index, 1.0 / fps, path.name)
                self.write({"video": str(path), "frame": index, "faces": [f.to_json() for f in faces]})
                if writer is not None:
                    overlay = rgb
                    for f in faces:
                        overlay = draw_landmarks(overlay, f.points, scheme=self.predictor.scheme)
                    writer.write(overlay[..., ::-1])
                ok, frame = cap.read()
                index += 1
                bar.update()
        cap.release()
        if writer is not None:
            writer.release()

    def track(self, rgb: np.ndarray, tracks: list[dict], index: int, dt: float, name: str) -> list[FaceLandmarks]:
        """Detect every few frames; in between, crop where each face's landmarks were."""
        if self.boxes is not None:  # given boxes ("<video name>:<frame>") start or reset tracks
            boxes = self.boxes.get(f"{name}:{index}")
            if boxes is not None:
                for box in boxes:
                    if problem := box_problem(box, rgb.shape):
                        log.warning("%s frame %d: box %s rejected: %s", name, index, np.round(box, 2).tolist(), problem)
                boxes = np.array([b for b in boxes if box_problem(b, rgb.shape) is None]).reshape(-1, 4)
        elif index % self.args.redetect_every == 0 or not tracks:
            boxes = self.detector(rgb)
            boxes = boxes if len(boxes) else None  # a detector miss keeps the faces tracked so far
        else:
            boxes = None
        if boxes is not None:
            tracks[:] = [self.continue_track(b, tracks) for b in boxes]
        faces = self.predictor.predict(rgb, np.array([t["box"] for t in tracks]).reshape(-1, 4))
        for t, f in zip(tracks, faces, strict=True):
            if t["smoother"] is not None:
                f.points = t["smoother"](f.points, dt, f.sigma)
            t["box"] = landmark_box(f.points)
        return faces

    def continue_track(self, box: np.ndarray, tracks: list[dict]) -> dict:
        """A detection that overlaps a track (IoU > 0.3) continues it: its landmark box and
        smoothing state are kept (they fit the face better than a fresh detector box)."""
        best = max(tracks, key=lambda t: box_iou(box, t["box"]), default=None)
        if best is not None and box_iou(box, best["box"]) > 0.3:
            return best
        return {"box": box, "smoother": make_smoother(self.args.smooth)}


def check_size(path: Path) -> None:
    if not path.is_file():
        raise BadInputError(f"{path}: not found")
    header = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if header is not None and header.shape[0] * header.shape[1] * 64 > MAX_PIXELS:
        raise BadInputError(
            f"{path}: image too large (about {header.shape[0] * header.shape[1] * 64:,} pixels; limit {MAX_PIXELS:,})"
        )


def expand(inputs: list[Path]) -> list[tuple[Path, str]]:
    """Files to read, each with its name in the outputs: the path relative to the folder
    given (so sub/a.jpg and sub2/a.jpg stay apart), or its file name for a file given."""
    files = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in {*IMAGE_SUFFIXES, *VIDEO_SUFFIXES})
            files += [(f, f.relative_to(p).as_posix()) for f in found]
        else:
            files.append((p, p.name))
    return files


def overlay_name(name: str) -> str:
    """overlays/<name>, kept a JPEG: a.jpg -> a.jpg, a.png -> a.png.jpg (a.jpg and a.png differ)."""
    return name if Path(name).suffix.lower() in (".jpg", ".jpeg") else f"{name}.jpg"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        runner = Runner(args)
    except (FileNotFoundError, BadInputError, ValueError) as e:
        log.error("%s", e)
        return 2
    files = expand(args.inputs)
    images = [(f, name) for f, name in files if f.suffix.lower() not in VIDEO_SUFFIXES]
    try:
        for f, name in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
            runner.image(f, name)
        for f, name in files:
            if f.suffix.lower() in VIDEO_SUFFIXES:
                runner.video(f, name)
    finally:
        runner.close()
    log.info("wrote %s", args.out / "predictions.jsonl")
    if runner.failures:
        log.warning("%d input(s) could not be read:\n  %s", len(runner.failures), "\n  ".join(runner.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
