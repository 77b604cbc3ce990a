"""Faces as the data pipeline sees them: a source of annotated photos and the torch Dataset
that crops them by the crop protocol (smallnet_lit.data.crop)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from smallnet_lit.data.crop import CropConfig, apply_affine, compose_affine, crop_transform, invert_affine, warp
from smallnet_lit.data.sample import PIXEL_MEAN, PIXEL_STD, FaceSample, FaceSource, normalize  # noqa: F401 - re-exported


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB -> normalized CHW float tensor."""
    return torch.from_numpy(normalize(image))


class FaceDataset(Dataset):
    """Crops faces of a source to the network input and (for training) augments them.

    Items: image (3, S, S), points (K, 2) in input pixels, valid (K,) (points inside the
    crop), to_photo (2, 3) mapping input pixels back to photo pixels, attributes, index,
    mirror_shift (the source's flip offset in input pixels: a flip test adds it back twice) and
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
        image = warp(sample.image, m, self.input_size)
        points = apply_affine(m, sample.points.astype(np.float64))
        # The files' flip offset in input pixels along the crop's x axis (photo -> input scale).
        photo_to_input = m if sample.to_photo is None else compose_affine(m, invert_affine(sample.to_photo))
        mirror_shift = sample.flip_offset * abs(photo_to_input[0, 0])
        if flipped:
            points = points[self.source.scheme.flip_permutation]
            # Mirrored, points `flip_offset` right of the content would land that far left of it:
            # move them back to the files' side (twice the offset).
            points[:, 0] += 2 * mirror_shift
        if self.augment and self.photometric is not None:
            image = self.photometric(image=image, rng=rng)
        inside = (points >= -0.5).all(1) & (points <= self.input_size - 0.5).all(1)
        return {
            "image": to_tensor(image),
            "points": torch.from_numpy(points.astype(np.float32)),
            "valid": torch.from_numpy(inside),
            "to_photo": torch.from_numpy(compose_affine(sample.to_photo, invert_affine(m)).astype(np.float32)),
            "attributes": torch.from_numpy(np.asarray(sample.attributes, np.float32)),
            "index": torch.tensor(index),
            "source": torch.tensor(self.source.source_of(index)),
            "mirror_shift": torch.tensor(mirror_shift, dtype=torch.float32),
            "key": sample.key,
        }
