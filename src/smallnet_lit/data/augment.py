"""Photometric augmentation (albumentations). Geometric jitter (shift, scale, rotation,
flip) lives in the crop transform, which moves the points exactly; these transforms only
change pixel values, so the points need no update."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks for updates online at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402


class Photometric:
    """Colour, blur, grey, noise and occlusion patches, each applied with its probability.

    The in-the-wild options (off by default, so older recipes repeat exactly):
    `lighting` (gamma, tone curve, a cast shadow), `strong_blur` (defocus or long motion
    streaks), `lowres` (down- then upscaled: small faces and video frames) and `jpeg`
    (quality 20-70 compression)."""

    def __init__(
        self,
        colour: float = 0.8,
        blur: float = 0.3,
        grey: float = 0.1,
        noise: float = 0.2,
        occlusion: float = 0.3,
        lighting: float = 0.0,
        strong_blur: float = 0.0,
        lowres: float = 0.0,
        jpeg: float = 0.0,
    ) -> None:
        probabilities = dict(
            colour=colour,
            blur=blur,
            grey=grey,
            noise=noise,
            occlusion=occlusion,
            lighting=lighting,
            strong_blur=strong_blur,
            lowres=lowres,
            jpeg=jpeg,
        )
        for name, p in probabilities.items():
            if not 0 <= p <= 1:
                raise ValueError(f"photometric augmentation {name} must be a probability in [0, 1], got {p}")
        transforms = [
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=colour),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7))], p=blur),
            A.ToGray(p=grey),
            A.GaussNoise(std_range=(0.02, 0.08), p=noise),
            A.CoarseDropout(
                num_holes_range=(1, 2),
                hole_height_range=(0.1, 0.35),
                hole_width_range=(0.1, 0.35),
                fill="random_uniform",
                p=occlusion,
            ),
        ]
        # Added only when enabled: a transform with p=0 still draws from the seeded stream.
        optional = [
            (
                lighting,
                A.OneOf(
                    [
                        A.RandomGamma(gamma_limit=(50, 200)),
                        A.RandomToneCurve(scale=0.3),
                        A.RandomShadow(shadow_roi=(0, 0, 1, 1), shadow_intensity_range=(0.3, 0.7)),
                    ]
                ),
            ),
            (strong_blur, A.OneOf([A.Defocus(radius=(2, 5)), A.MotionBlur(blur_limit=(9, 17))])),
            (
                lowres,
                A.Downscale(
                    scale_range=(0.25, 0.6),
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                ),
            ),
            (jpeg, A.ImageCompression(quality_range=(20, 70))),
        ]
        for p, transform in optional:
            if p > 0:
                transform.p = p
                transforms.append(transform)
        self.compose = A.Compose(transforms)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Seed from the sample's generator so augmentation repeats across runs and workers.
        self.compose.set_random_seed(int(rng.integers(2**31)))
        return self.compose(image=image)["image"]
