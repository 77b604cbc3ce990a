"""Make a sharp photo of a face look like a low-resolution video frame: the whole image shrunk
so that the face is as small as a YouTube Faces frame's, softened, and JPEG-compressed, with the
points moved exactly. Used on profiled copies of studio faces (tools.degrade_faces): most real
turned faces here are video frames, while the profiled turned faces are sharp photographs."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class VideoLike:
    """The ranges the degradation draws from. `face_px`: the face's size (the diagonal of its
    points' bounding box) after shrinking, drawn log-uniformly; faces already smaller keep their
    size. The default spans YouTube Faces frames' 10th to 90th percentile (66-178 px; 300-W's
    median is about 300). `blur`: the chance of a Gaussian blur with sigma in `blur_sigma` px.
    `jpeg`: the quality range the frame is saved at."""

    face_px: tuple[float, float] = (60.0, 180.0)
    blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    jpeg: tuple[int, int] = (30, 80)

    def __post_init__(self) -> None:
        low, high = self.face_px
        if not 0 < low <= high:
            raise ValueError(f"face_px must be 0 < low <= high, got {self.face_px}")
        if not 0 <= self.blur <= 1:
            raise ValueError(f"blur must be a probability in [0, 1], got {self.blur}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must be 0 < low <= high, got {self.blur_sigma}")
        if not 1 <= self.jpeg[0] <= self.jpeg[1] <= 100:
            raise ValueError(f"jpeg qualities must be 1 <= low <= high <= 100, got {self.jpeg}")


@dataclass
class Degraded:
    image: np.ndarray  # (H, W, 3) uint8 RGB, not yet compressed: save it at `quality`
    points: np.ndarray  # (N, 2), 0-based pixel coordinates in the smaller image
    scale: float  # new size / old size (1.0: the face was small enough already)
    quality: int  # the JPEG quality to save it at


def face_size(points: np.ndarray) -> float:
    """The diagonal of the points' bounding box, in pixels."""
    return float(np.hypot(*(points.max(0) - points.min(0))))


def degrade(image: np.ndarray, points: np.ndarray, rng: np.random.Generator, how: VideoLike = VideoLike()) -> Degraded:
    """The image shrunk, blurred and assigned a JPEG quality as drawn from `how` with `rng`."""
    height, width = image.shape[:2]
    target = float(np.exp(rng.uniform(*np.log(how.face_px))))
    scale = min(1.0, target / max(face_size(points), 1e-6))
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    # Pixel centres sit at integers: a pixel spans [i - 0.5, i + 0.5], so scale about -0.5.
    sx, sy = new_w / width, new_h / height
    moved = (points + 0.5) * np.array([sx, sy]) - 0.5
    blurred = rng.random() < how.blur
    sigma = rng.uniform(*how.blur_sigma)
    if blurred:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    quality = int(rng.integers(how.jpeg[0], how.jpeg[1] + 1))
    return Degraded(np.ascontiguousarray(image), moved, float(np.sqrt(sx * sy)), quality)
