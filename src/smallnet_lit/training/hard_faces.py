"""A hard-face subset, defined from the ground truth only (never from predictions), so
robustness is measured on the same faces whatever model is evaluated.

Three difficulty measures per face, each ranking the evaluated faces; the worst
`fraction` (10%) of each are flagged, and a face is hard when any flag is set:
- large yaw: the nose tip sits off the middle of the contour ends, measured along the eye
  line (asymmetry |a - b| / (a + b): 0 frontal, towards 1 profile);
- small: inter-ocular distance (outer eye corners) in photo pixels;
- blurred: the variance of the Laplacian of the grey 128-px evaluation crop (a small face
  upscaled to 128 px is blurred too).
Ranks, not fixed thresholds, because the sets differ in resolution (300-W photos here are
downscaled to at most 448 px; YouTube Faces frames are small): on the 132-face 300-W
validation split the subset holds the 14 most turned, 14 smallest and 14 blurriest faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from smallnet_lit.data.crop import CropConfig, apply_affine, crop_transform, warp
from smallnet_lit.data.faces import FaceSample, FaceSource
from smallnet_lit.model.landmarks import LandmarkScheme

CRITERIA = ("large_yaw", "small", "blurred")
HARD_FRACTION = 0.1


def yaw_asymmetry(points: np.ndarray, scheme: LandmarkScheme) -> float:
    """0 for a frontal face, towards 1 for a profile."""
    left, nose, right = (points[i] for i in scheme.yaw_points)
    eye_line = points[scheme.eye_corners[1]] - points[scheme.eye_corners[0]]
    u = eye_line / max(np.linalg.norm(eye_line), 1e-9)
    a, b = float((nose - left) @ u), float((right - nose) @ u)
    return float(min(1.0, abs(a - b) / max(abs(a) + abs(b), 1e-9)))


def sharpness(image: np.ndarray, points: np.ndarray, size: int = 128) -> float:
    """Variance of the Laplacian of the face's evaluation crop at `size` pixels."""
    # the default eval crop: the difficulty of a face does not depend on the model evaluated
    m, _ = crop_transform(FaceSample(image, points, ""), size, CropConfig())
    crop = warp(image, m, size, cv2.INTER_AREA)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass
class Difficulty:
    yaw_asymmetry: float
    iod_pixels: float
    sharpness: float


def hard_flags(faces: list[Difficulty], fraction: float = HARD_FRACTION) -> dict[str, np.ndarray]:
    """Boolean (N,) flags per criterion (the worst ceil(fraction * N) faces of each) and
    `hard`, their union. Ties are broken by position, so the counts are exact."""
    if not 0 < fraction <= 1:
        raise ValueError(f"hard-face fraction must be in (0, 1], got {fraction}")
    n = len(faces)
    k = int(np.ceil(fraction * n)) if n else 0
    scores = {  # higher = harder
        "large_yaw": np.array([f.yaw_asymmetry for f in faces]),
        "small": -np.array([f.iod_pixels for f in faces]),
        "blurred": -np.array([f.sharpness for f in faces]),
    }
    flags = {}
    for name, score in scores.items():
        flag = np.zeros(n, bool)
        flag[np.argsort(-score, kind="stable")[:k]] = True
        flags[name] = flag
    flags["hard"] = np.logical_or.reduce([flags[c] for c in CRITERIA]) if n else np.zeros(0, bool)
    return flags


def face_difficulty(source: FaceSource, index: int) -> Difficulty:
    sample = source.load(index)
    scheme = source.scheme
    # Photo-pixel inter-ocular distance: cached crops are rescaled, so map the points back.
    photo_points = sample.points
    if sample.to_photo is not None:
        photo_points = apply_affine(sample.to_photo, sample.points)
    iod = float(np.linalg.norm(photo_points[scheme.eye_corners[0]] - photo_points[scheme.eye_corners[1]]))
    return Difficulty(yaw_asymmetry(sample.points, scheme), iod, sharpness(sample.image, sample.points))


# Head-yaw bins of the large-pose report (degrees, from the ground truth's 3D fit).
YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))


def yaw_bin_names() -> list[str]:
    return [f"yaw_{lo:g}_{hi:g}" for lo, hi in YAW_BINS] + [f"yaw_{YAW_BINS[1][0]:g}+"]


def yaw_bin_flags(yaws: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (N,) flags of each yaw bin and of every face above 30 deg (`yaw_30+`);
    faces whose fit failed (nan) are in none."""
    flags = {f"yaw_{lo:g}_{hi:g}": (yaws >= lo) & (yaws < hi if hi < 90 else yaws <= hi) for lo, hi in YAW_BINS}
    flags[f"yaw_{YAW_BINS[1][0]:g}+"] = yaws >= YAW_BINS[1][0]
    return flags
