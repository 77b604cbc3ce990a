"""Landmark schemes: the one place for point counts, flip pairs, eye corners and parts.

Indices are 0-based. Flip pairs map each point to its mirror partner when the image is
flipped horizontally; points on the symmetry axis map to themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LandmarkScheme:
    name: str
    num_points: int
    # Outer eye corners (image-left eye, image-right eye): the inter-ocular NME normalizer.
    eye_corners: tuple[int, int]
    flip_pairs: tuple[tuple[int, int], ...]
    # Ends of the face contour (image-left, image-right) and the nose tip: their asymmetry
    # along the eye line estimates the head's yaw (the hard-face subset).
    yaw_points: tuple[int, int, int] = (0, 0, 0)
    # Part name -> point indices, in drawing order (overlays join each part with a line).
    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def flip_permutation(self) -> np.ndarray:
        """perm[i] = index of the point that lands on semantic slot i after a flip."""
        perm = np.arange(self.num_points)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def flip_points(self, points, width: int):
        """Mirror (..., K, 2) points (numpy, or a torch tensor: test-time flips) the way
        cv2.flip / Tensor.flip(-1) mirror an image `width` pixels wide (pixel centres at
        integer coordinates, so x -> width - 1 - x), then restore the semantic order: the old
        left eye corner becomes the new right one."""
        # A torch tensor stays one, on its device; torch is not imported here (the ONNX
        # inference path runs without it).
        if hasattr(points, "clone"):
            flipped = points.clone()
            perm = flipped.new_tensor(self.flip_permutation).long()
        else:
            flipped, perm = np.array(points, dtype=np.float64, copy=True), self.flip_permutation
        flipped[..., 0] = width - 1 - flipped[..., 0]
        return flipped[..., perm, :]


def _mirror(lo: int, hi: int) -> list[tuple[int, int]]:
    """Pairs (lo, hi), (lo+1, hi-1), ... of a run that mirrors onto itself."""
    pairs = []
    while lo < hi:
        pairs.append((lo, hi))
        lo, hi = lo + 1, hi - 1
    return pairs


def _zip(left: range | list[int], right: range | list[int]) -> list[tuple[int, int]]:
    return list(zip(left, right, strict=True))


WFLW98 = LandmarkScheme(
    name="wflw98",
    num_points=98,
    eye_corners=(60, 72),
    yaw_points=(0, 54, 32),
    flip_pairs=tuple(
        _mirror(0, 32)  # face contour
        + _zip(range(33, 38), range(46, 41, -1))  # brow upper edges
        + _zip(range(38, 42), range(50, 46, -1))  # brow lower edges
        + _mirror(55, 59)  # nostrils
        + _zip(range(60, 65), range(72, 67, -1))  # eye corners and upper lids
        + _zip(range(65, 68), range(75, 72, -1))  # lower lids
        + _mirror(76, 82)  # outer upper lip
        + _mirror(83, 87)  # outer lower lip
        + _mirror(88, 92)  # inner upper lip
        + _mirror(93, 95)  # inner lower lip
        + [(96, 97)]  # pupils
    ),
    parts={
        "contour": tuple(range(0, 33)),
        "left_brow": tuple(range(33, 42)),
        "right_brow": tuple(range(42, 51)),
        "nose_bridge": tuple(range(51, 55)),
        "nostrils": tuple(range(55, 60)),
        "left_eye": tuple(range(60, 68)),
        "right_eye": tuple(range(68, 76)),
        "outer_lips": tuple(range(76, 88)),
        "inner_lips": tuple(range(88, 96)),
        "pupils": (96, 97),
    },
)

IBUG68 = LandmarkScheme(
    name="ibug68",
    num_points=68,
    eye_corners=(36, 45),
    yaw_points=(0, 30, 16),
    flip_pairs=tuple(
        _mirror(0, 16)  # jaw
        + _mirror(17, 26)  # brows
        + _mirror(31, 35)  # nostrils
        + _zip(range(36, 40), range(45, 41, -1))  # eye corners and upper lids
        + [(40, 47), (41, 46)]  # lower lids
        + _mirror(48, 54)  # outer upper lip
        + _mirror(55, 59)  # outer lower lip
        + _mirror(60, 64)  # inner upper lip
        + _mirror(65, 67)  # inner lower lip
    ),
    parts={
        "contour": tuple(range(0, 17)),
        "left_brow": tuple(range(17, 22)),
        "right_brow": tuple(range(22, 27)),
        "nose_bridge": tuple(range(27, 31)),
        "nostrils": tuple(range(31, 36)),
        "left_eye": tuple(range(36, 42)),
        "right_eye": tuple(range(42, 48)),
        "outer_lips": tuple(range(48, 60)),
        "inner_lips": tuple(range(60, 68)),
    },
)

# The 68 iBUG points as a subset of the 98 WFLW points (every other contour point, the
# upper brow edges, the eye corners and lid points nearest the 68-point positions).
WFLW98_TO_IBUG68 = np.array(
    list(range(0, 33, 2))
    + list(range(33, 38))
    + list(range(42, 47))
    + list(range(51, 60))
    + [60, 61, 63, 64, 65, 67]
    + [68, 69, 71, 72, 73, 75]
    + list(range(76, 96))
)

SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (WFLW98, IBUG68)}
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def get_scheme(name_or_points: str | int) -> LandmarkScheme:
    """Look a scheme up by name ('wflw98', 'ibug68') or by its point count (98, 68)."""
    for scheme in SCHEMES.values():
        if name_or_points in (scheme.name, scheme.num_points):
            return scheme
    known = ", ".join(f"{s.name} ({s.num_points} points)" for s in SCHEMES.values())
    raise ValueError(f"unknown landmark scheme {name_or_points!r}; known: {known}")
