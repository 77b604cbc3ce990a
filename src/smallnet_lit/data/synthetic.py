"""A built-in synthetic face dataset with the WFLW 98-point topology.

Each face is a 3-D template (contour, brows, eyes with pupils, nose, lips) with random
shape, expression and gaze, rotated by a random yaw/pitch/roll, projected, and drawn by
OpenCV over a cluttered background with random colours, blur, noise and occlusions. The
landmarks are the projected template points, so the ground truth is exact. Face `i` of a
dataset with seed `s` is always the same picture (its generator is seeded by (s, i)).
"""

from __future__ import annotations

import cv2
import numpy as np

from smallnet_lit.data.faces import FaceSample, FaceSource
from smallnet_lit.model.landmarks import IBUG68, WFLW98, WFLW98_TO_IBUG68, LandmarkScheme, get_scheme
from smallnet_lit.model.shapes import template_3d

PARTS = {name: list(points) for name, points in WFLW98.parts.items()}  # what is drawn where
_SUBPIXEL_BITS = 4  # cv2 drawing with fixed-point coordinates: 1/16 px precision
_SCALE = 1 << _SUBPIXEL_BITS


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _colour(rng, lo=0, hi=255) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, size=3))


def _fp(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # A smooth colour field: a random 2x2 colour grid stretched over the canvas.
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    img = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    for _ in range(rng.integers(3, 12)):  # clutter: face-coloured shapes are distractors too
        kind, colour = rng.integers(3), _colour(rng)
        p = rng.integers(0, size, 2)
        if kind == 0:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.integers(4, size // 4)), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            q = p + rng.integers(-size // 3, size // 3, 2)
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, -1)
        else:
            q = rng.integers(0, size, 2)
            cv2.line(
                img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 6)), cv2.LINE_AA
            )
    return img


def render_face(
    rng: np.random.Generator, image_size: int = 256, drawn: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic photo (H, W, 3) uint8 RGB and its 98 landmarks (98, 2) in pixels.
    `drawn`, when given, is filled with how the face was drawn (pose in degrees, mouth opening,
    lip colour, occluder, blur kernel, brightness gain and offset): what WFLW's attributes mark."""
    size = image_size
    tmpl = template_3d(rng)
    yaw, pitch, roll = rng.uniform(-40, 40), rng.uniform(-20, 20), rng.uniform(-35, 35)
    rot = _rotation(np.radians(yaw), np.radians(pitch), np.radians(roll))
    scale = rng.uniform(0.14, 0.24) * size  # pixels per template unit
    centre = rng.uniform(0.38, 0.62, 2) * size
    proj = (tmpl @ rot.T)[:, :2] * scale + centre

    img = _background(rng, size)
    skin = np.array(_colour(rng, 40, 250))
    # Head: the contour closed over a forehead arc (not landmarks, drawn only).
    forehead = np.stack(
        [np.linspace(1.2, -1.2, 12), -0.35 - 1.1 * np.sin(np.linspace(0.1, np.pi - 0.1, 12)), -0.3 * np.ones(12)], 1
    )
    head = np.concatenate([proj[PARTS["contour"]], ((forehead @ rot.T)[:, :2] * scale + centre)])
    cv2.fillPoly(img, [_fp(head)], tuple(int(c) for c in skin), cv2.LINE_AA, _SUBPIXEL_BITS)
    shade = tuple(int(c) for c in (skin * rng.uniform(0.5, 0.85)))
    cv2.polylines(img, [_fp(proj[PARTS["contour"]])], False, shade, 2, cv2.LINE_AA, _SUBPIXEL_BITS)
    if rng.random() < 0.6:  # hair
        hair = np.concatenate(
            [((forehead @ rot.T)[:, :2] * scale + centre), proj[[PARTS["contour"][-1], PARTS["contour"][0]]]]
        )
        cv2.fillPoly(img, [_fp(hair[:14])], _colour(rng, 0, 120), cv2.LINE_AA, _SUBPIXEL_BITS)

    brow = _colour(rng, 0, 90)
    for part in ("left_brow", "right_brow"):
        cv2.fillPoly(img, [_fp(proj[PARTS[part]])], brow, cv2.LINE_AA, _SUBPIXEL_BITS)
    sclera = _colour(rng, 180, 256)
    iris = _colour(rng, 0, 140)
    for part, pupil in zip(("left_eye", "right_eye"), PARTS["pupils"], strict=True):
        eye = proj[PARTS[part]]
        cv2.fillPoly(img, [_fp(eye)], sclera, cv2.LINE_AA, _SUBPIXEL_BITS)
        radius = max(1.0, 0.16 * scale)
        # The iris is drawn on a copy of the eye's bounding patch and kept inside the lids.
        x0, y0 = np.floor(eye.min(0)).astype(int).clip(0, size - 1)
        x1, y1 = (np.ceil(eye.max(0)).astype(int) + 1).clip(1, size)
        if x1 > x0 and y1 > y0:
            patch = img[y0:y1, x0:x1]
            mask = np.zeros(patch.shape[:2], np.uint8)
            cv2.fillPoly(mask, [_fp(eye - [x0, y0])], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
            disc = patch.copy()
            centre = tuple(int(v) for v in _fp(proj[pupil] - [x0, y0]))
            cv2.circle(disc, centre, int(radius * _SCALE), iris, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
            cv2.circle(disc, centre, int(radius * 0.4 * _SCALE), (10, 10, 10), -1, cv2.LINE_AA, _SUBPIXEL_BITS)
            img[y0:y1, x0:x1] = np.where(mask[..., None] > 0, disc, patch)
        cv2.polylines(img, [_fp(eye)], True, shade, 1, cv2.LINE_AA, _SUBPIXEL_BITS)
    nose = tuple(int(c) for c in (skin * 0.6))
    cv2.polylines(img, [_fp(proj[PARTS["nose_bridge"]])], False, nose, 2, cv2.LINE_AA, _SUBPIXEL_BITS)
    cv2.polylines(img, [_fp(proj[PARTS["nostrils"]])], False, nose, 2, cv2.LINE_AA, _SUBPIXEL_BITS)
    lips = _colour(rng, 60, 220)
    cv2.fillPoly(img, [_fp(proj[PARTS["outer_lips"]])], lips, cv2.LINE_AA, _SUBPIXEL_BITS)
    cv2.fillPoly(img, [_fp(proj[PARTS["inner_lips"]])], _colour(rng, 0, 70), cv2.LINE_AA, _SUBPIXEL_BITS)

    looks = _photometric(rng, img, scale)
    if drawn is not None:
        # Inner lips' middles (upper 90, lower 94) apart, in half eye distances.
        drawn.update(yaw=yaw, pitch=pitch, roll=roll, mouth_open=float(tmpl[94, 1] - tmpl[90, 1]), lips=lips)
        drawn.update(looks[1])
    return looks[0], proj.astype(np.float32)


def _photometric(rng: np.random.Generator, img: np.ndarray, scale: float) -> tuple[np.ndarray, dict]:
    size = img.shape[0]
    looks = {"occluded": False, "blur": 0, "gain": 1.0, "offset": 0.0}
    if rng.random() < 0.35:  # occluder: a hand, a microphone, a scarf...
        w, h = rng.uniform(0.3, 1.2, 2) * scale
        c = rng.uniform(0.3, 0.7, 2) * size
        box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(w), float(h)), float(rng.uniform(0, 180))))
        cv2.fillPoly(img, [_fp(box)], _colour(rng), cv2.LINE_AA, _SUBPIXEL_BITS)
        looks["occluded"] = True
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5, 7]))
        img = cv2.GaussianBlur(img, (k, k), 0)
        looks["blur"] = k
    noise = rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 12)
    looks["gain"], looks["offset"] = rng.uniform(0.5, 1.3), rng.uniform(-40, 40)
    out = cv2.addWeighted(img.astype(np.float32), looks["gain"], noise, 1.0, looks["offset"])
    return out.clip(0, 255).astype(np.uint8), looks


class SyntheticFaces(FaceSource):
    """`num_faces` deterministic synthetic faces. Different `seed`s give disjoint sets
    (use one seed per split)."""

    def __init__(self, num_faces: int = 2000, seed: int = 0, image_size: int = 256, scheme: str = "wflw98") -> None:
        if num_faces < 1:
            raise ValueError(f"SyntheticFaces: num_faces must be positive, got {num_faces}")
        if image_size < 64:
            raise ValueError(f"SyntheticFaces: image_size must be at least 64, got {image_size}")
        self.num_faces, self.seed, self.image_size = num_faces, seed, image_size
        self._scheme = get_scheme(scheme)  # ibug68 keeps the 68-point subset of the drawn 98

    @property
    def scheme(self) -> LandmarkScheme:
        return self._scheme

    def __len__(self) -> int:
        return self.num_faces

    def load(self, index: int) -> FaceSample:
        if not 0 <= index < self.num_faces:
            raise IndexError(f"SyntheticFaces has {self.num_faces} faces, asked for {index}")
        rng = np.random.default_rng([self.seed, index])
        image, points = render_face(rng, self.image_size)
        if self._scheme is IBUG68:
            points = points[WFLW98_TO_IBUG68]
        return FaceSample(image=image, points=points, key=f"synthetic/{self.seed}/{index:06d}")
