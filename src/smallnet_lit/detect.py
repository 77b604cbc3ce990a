"""Face boxes for prediction: OpenCV's bundled Haar cascade, or boxes given by the user.

A Haar box is not a landmark box: measured on every 4th of the 1,213 real 300-W faces in
../shared/data (260 matched detections, 44 faces missed), the 68-point extent is 0.87x the
box width (10th-90th percentile 0.79-1.00) and its centre sits 0.14 box widths below the box
centre. `to_landmark_box` applies that, so the crop protocol of training applies to
detections. Re-measure: `python -m smallnet_lit.detect ../shared/data/300w-train`."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.faces import FaceSample, FaceSource

HAAR_EXTENT_RATIO = 0.87
HAAR_CENTRE_SHIFT = 0.14


@dataclass
class HaarFaceDetector:
    min_size: int = 40
    scale_factor: float = 1.1
    min_neighbors: int = 5
    cascade: str = "haarcascade_frontalface_default.xml"

    def __post_init__(self) -> None:
        path = Path(cv2.data.haarcascades) / self.cascade
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FileNotFoundError(f"OpenCV face cascade not found or unreadable: {path}")

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        """(N, 4) boxes x_min, y_min, x_max, y_max of the faces found, largest first."""
        grey = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        found = self._classifier.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        if len(found) == 0:
            return np.zeros((0, 4))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in found], dtype=np.float64)
        return boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]))]


def to_landmark_box(detections: np.ndarray) -> np.ndarray:
    """Haar boxes -> the square box the landmarks are expected to span."""
    w = detections[:, 2] - detections[:, 0]
    cx = (detections[:, 0] + detections[:, 2]) / 2
    cy = (detections[:, 1] + detections[:, 3]) / 2 + HAAR_CENTRE_SHIFT * w
    half = HAAR_EXTENT_RATIO * w / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


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

    def __init__(self, source: FaceSource, detector: HaarFaceDetector | None = None, min_iou: float = 0.3) -> None:
        from tqdm import tqdm

        self.source, self.detector = source, detector or HaarFaceDetector()
        self.kept: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.missed: dict[int, int] = {}
        for i in tqdm(range(len(source)), desc="detecting faces", unit="face"):
            sample = source.load(i)
            truth = np.concatenate([sample.points.min(0), sample.points.max(0)])
            photo = source.photo(i)
            if photo is None:
                found = to_landmark_box(self.detector(sample.image))
            else:  # detect on the photo, then map the boxes into the cached crop's pixels
                found = to_landmark_box(self.detector(photo))
                if len(found):
                    m = cv2.invertAffineTransform(sample.to_photo)
                    corners = found.reshape(-1, 2) @ m[:, :2].T + m[:, 2]
                    found = corners.reshape(-1, 4)
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
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or (lineno == 1 and row[0].strip().lower() in ("image", "name", "file")):
                    continue
                if len(row) != 5:
                    raise BadInputError(
                        f"{path}:{lineno}: expected image,x_min,y_min,x_max,y_max, got {len(row)} fields"
                    )
                boxes.setdefault(row[0].strip(), []).append(_box(row[1:], path, lineno))
    return {k: np.array(v, dtype=np.float64) for k, v in boxes.items()}


def _box(values, path: Path, lineno: int | None) -> list[float]:
    where = f"{path}:{lineno}" if lineno else str(path)
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: box values must be numbers, got {values!r}") from None
    if len(box) != 4 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise BadInputError(f"{where}: a box is x_min y_min x_max y_max with x_max > x_min, y_max > y_min; got {box}")
    return box


def calibrate(root: str | Path, every: int = 4) -> dict[str, float]:
    """Haar box vs landmark box on annotated 300-W faces (a detection counts as the face's
    when its centre is within a third of the landmark extent of the landmark centre)."""
    from smallnet_lit.data.ibug import IbugFaces
    from smallnet_lit.data.images import read_image

    detector = HaarFaceDetector()
    ratios, dy, missed = [], [], 0
    for rec in IbugFaces(root).records[::every]:
        lo, hi = rec.points.min(0), rec.points.max(0)
        centre, side = (lo + hi) / 2, float((hi - lo).max())
        match = [
            b for b in detector(read_image(rec.image_path)) if np.linalg.norm((b[:2] + b[2:]) / 2 - centre) < side / 3
        ]
        if not match:
            missed += 1
            continue
        w = match[-1][2] - match[-1][0]
        ratios.append(side / w)
        dy.append((centre[1] - (match[-1][1] + match[-1][3]) / 2) / w)
    return {
        "matched": len(ratios),
        "missed": missed,
        "extent_ratio_median": float(np.median(ratios)),
        "extent_ratio_p10": float(np.percentile(ratios, 10)),
        "extent_ratio_p90": float(np.percentile(ratios, 90)),
        "centre_shift_median": float(np.median(dy)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Measure Haar box -> landmark box on annotated 300-W faces")
    parser.add_argument("root")
    parser.add_argument("--every", type=int, default=4, help="use every N-th face")
    args = parser.parse_args()
    print(json.dumps(calibrate(args.root, args.every), indent=1))
