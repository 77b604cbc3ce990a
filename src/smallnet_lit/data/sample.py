"""A face as every part of the package sees it (FaceSample), a list of them (FaceSource) and
the input normalization: numpy only, so prediction starts without torch."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smallnet_lit.model.landmarks import LandmarkScheme

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
    # Photo pixels the annotation files place points right of the pixel grid's mirror axis
    # (a convention offset of the files, data.sources.NAME.flip_offset): a flipped face keeps
    # its points that far right, so flips teach the files' convention, not its mirror image.
    flip_offset: float = 0.0


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


def normalize(image: np.ndarray, mean: float = PIXEL_MEAN, std: float = PIXEL_STD) -> np.ndarray:
    """HWC uint8 RGB -> the network's normalized CHW float32 input."""
    return np.ascontiguousarray(((image.astype(np.float32) - mean) / std).transpose(2, 0, 1))


@dataclass
class FaceRecord:
    """One face as annotated: its photo, (K, 2) 0-based pixel points, optional box and
    attribute flags, and where it was annotated (for error messages)."""

    image_path: Path
    points: np.ndarray
    key: str
    origin: str
    box: np.ndarray | None = None
    attributes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
