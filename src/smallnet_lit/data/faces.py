"""Faces as the data pipeline sees them: a source of annotated photos, the crop protocol
(a similarity transform from the photo to the network input) and the torch Dataset."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from smallnet_lit.landmarks import LandmarkScheme

# Input normalization, shared by training, evaluation and prediction.
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0


@dataclass
class FaceSample:
    """One annotated face in its photo: RGB uint8 image, (K, 2) points in pixel
    coordinates (0-based, pixel centres at integers), optional detector box
    (x_min, y_min, x_max, y_max) and attribute flags."""

    image: np.ndarray
    points: np.ndarray
    key: str
    box: np.ndarray | None = None
    attributes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # When `image` is a cached crop: the 2x3 map from its pixels to the original photo's.
    to_photo: np.ndarray | None = None


class FaceSource(abc.ABC):
    """A list of annotated faces: the readers (WFLW, 300-W) and the synthetic faces."""

    @property
    @abc.abstractmethod
    def scheme(self) -> LandmarkScheme: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load(self, index: int) -> FaceSample: ...

    attribute_names: tuple[str, ...] = ()

    def source_of(self, index: int) -> int:
        """Which part a face comes from, when a source mixes several (SourceMix)."""
        return 0

    def photo(self, index: int) -> np.ndarray | None:
        """The whole original photo of a face, when `load` gives a cached crop of it (None:
        `load`'s image is the photo)."""
        return None


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


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def _compose(outer: np.ndarray | None, inner: np.ndarray) -> np.ndarray:
    """outer o inner for 2x3 affines (outer None = identity)."""
    if outer is None:
        return inner
    return outer[:, :2] @ inner + np.concatenate([np.zeros((2, 2)), outer[:, 2:]], axis=1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB -> normalized CHW float tensor."""
    return torch.from_numpy((image.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD).permute(2, 0, 1).contiguous()


class FaceDataset(Dataset):
    """Crops faces of a source to the network input and (for training) augments them.

    Items: image (3, S, S), points (K, 2) in input pixels, valid (K,) (points inside the
    crop), to_photo (2, 3) mapping input pixels back to photo pixels, attributes, index and
    key (the face's name: its image path relative to the data root, for readers).
    With `seed`, training jitter is drawn from a generator seeded by (seed, epoch, index),
    so runs repeat exactly whatever the worker count.
    """

    def __init__(
        self,
        source: FaceSource,
        input_size: int,
        crop: CropConfig,
        augment: bool = False,
        photometric=None,
        seed: int = 0,
    ) -> None:
        self.source, self.input_size, self.crop = source, input_size, crop
        self.augment, self.photometric, self.seed = augment, photometric, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.source.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        m, flipped = crop_transform(sample, self.input_size, self.crop, rng)
        image = cv2.warpAffine(
            sample.image, m, (self.input_size, self.input_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        points = apply_affine(m, sample.points.astype(np.float64))
        if flipped:
            points = points[self.source.scheme.flip_permutation]
        if self.augment and self.photometric is not None:
            image = self.photometric(image=image, rng=rng)
        inside = (points >= -0.5).all(1) & (points <= self.input_size - 0.5).all(1)
        return {
            "image": to_tensor(image),
            "points": torch.from_numpy(points.astype(np.float32)),
            "valid": torch.from_numpy(inside),
            "to_photo": torch.from_numpy(_compose(sample.to_photo, invert_affine(m)).astype(np.float32)),
            "attributes": torch.from_numpy(np.asarray(sample.attributes, np.float32)),
            "index": torch.tensor(index),
            "source": torch.tensor(self.source.source_of(index)),
            "key": sample.key,
        }
