"""The crop protocol: the similarity transform from a photo to the network input (square,
`scale` x the landmark extent or a given box, with training jitter), and the affine helpers
every part of the package uses to move images, points and boxes between photo and crop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from smallnet_lit.data.sample import FaceSample


@dataclass
class CropConfig:
    """How a face is cut out of its photo.

    Evaluation: a square centred on the box, `scale` times its longer side (box = the
    landmark extent, or the given detector box when `use_given_box`).
    Training adds random jitter: centre shift (share of the side), scale factor, rotation
    (degrees) and horizontal flip with the scheme's pair permutation, all composed into
    the one affine warp so the image is resampled once and the points move exactly.
    `squeeze` narrows the face horizontally by a random factor in [1 - squeeze, 1] (the
    foreshortening of a turned head, without changing which side is which).
    """

    scale: float = 1.2
    use_given_box: bool = False
    shift: float = 0.0
    scale_jitter: float = 0.0
    rotation: float = 0.0
    flip: float = 0.0
    squeeze: float = 0.0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"crop scale must be positive, got {self.scale}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"crop flip must be a probability in [0, 1], got {self.flip}")
        if not 0 <= self.squeeze < 1:
            raise ValueError(f"crop squeeze must be in [0, 1), got {self.squeeze}")
        if self.shift < 0 or self.rotation < 0 or not 0 <= self.scale_jitter < 1:
            raise ValueError(
                f"crop jitter must be non-negative (scale_jitter < 1), got shift={self.shift}, "
                f"scale_jitter={self.scale_jitter}, rotation={self.rotation}"
            )


def crop_transform(
    sample: FaceSample, size: int, crop: CropConfig, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, bool]:
    """The 2x3 matrix that maps photo pixels to the size x size network input, and
    whether it mirrors the face."""
    if crop.use_given_box and sample.box is not None:
        x0, y0, x1, y1 = sample.box
    else:
        (x0, y0), (x1, y1) = sample.points.min(0), sample.points.max(0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float64)
    side = max(x1 - x0, y1 - y0) * crop.scale
    angle, flip, squeeze = 0.0, False, 1.0
    if rng is not None:
        centre += rng.uniform(-crop.shift, crop.shift, 2) * side
        side *= rng.uniform(1 - crop.scale_jitter, 1 + crop.scale_jitter)
        angle = np.radians(rng.uniform(-crop.rotation, crop.rotation))
        flip = bool(rng.random() < crop.flip)
        if crop.squeeze > 0:  # drawn only when on, so older recipes keep their stream
            squeeze = rng.uniform(1 - crop.squeeze, 1)
    k = size / max(side, 1e-6)
    c, s = np.cos(angle) * k, np.sin(angle) * k
    half = (size - 1) / 2
    m = np.array([[c, s, half - c * centre[0] - s * centre[1]], [-s, c, half + s * centre[0] - c * centre[1]]])
    if squeeze != 1.0:  # narrow along the output's x axis, about the crop centre
        m = np.array([[squeeze, 0, half * (1 - squeeze)], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
    if flip:  # x -> size - 1 - x, the way cv2.flip mirrors pixels
        m = np.array([[-1.0, 0, size - 1], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
    return m, flip


def apply_affine(m, points):
    """Points (..., K, 2) through 2x3 maps (..., 2, 3): one map, or one per face of a batch
    (numpy arrays or torch tensors). With a crop's `to_photo` map: crop pixels -> photo pixels."""
    return points @ m[..., :2].swapaxes(-1, -2) + m[..., None, :, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def compose_affine(outer: np.ndarray | None, inner: np.ndarray) -> np.ndarray:
    """outer o inner for 2x3 affines (outer None = identity)."""
    if outer is None:
        return inner
    return outer[:, :2] @ inner + np.concatenate([np.zeros((2, 2)), outer[:, 2:]], axis=1)


def warp(image: np.ndarray, m: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The size x size crop that `m` (photo -> crop pixels) cuts out of the image, black
    outside the photo."""
    return cv2.warpAffine(image, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


def apply_affine_to_box(m: np.ndarray, box: np.ndarray) -> np.ndarray:
    """x_min y_min x_max y_max mapped corner by corner (an axis-aligned scale + shift)."""
    return apply_affine(m, np.asarray(box, np.float64).reshape(2, 2)).reshape(4)
