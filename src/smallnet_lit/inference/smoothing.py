"""Temporal smoothing of landmark tracks in video.

OneEuroFilter (Casiez et al., CHI 2012): a low-pass filter whose cut-off rises with the
speed of the signal, so a still face stops jittering and a moving face is not lagged.
SigmaFilter: a per-point constant-position Kalman filter whose measurement noise is the
network's own predicted sigma, so confident points move freely and unsure ones are held.
Both take (K, 2) points per frame (and sigma for SigmaFilter) and return smoothed points.
Coordinates are in pixels; the One Euro cut-offs are scaled by the face size so one
setting works for small and large faces.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


def _face_size(points: np.ndarray) -> float:
    return max(float(np.ptp(points[:, 0])), float(np.ptp(points[:, 1])), 1.0)


class OneEuroFilter:
    """Defaults chosen with `python -m smallnet_lit.tools.bench_smoothing --pts <a real 300-W face>`
    (figures in docs/prediction.md): beta 20 keeps the lag of a moving face small; a lower
    beta smooths more but lags."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 20.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError(
                f"One Euro filter needs min_cutoff > 0, beta >= 0, d_cutoff > 0; got {min_cutoff}, {beta}, {d_cutoff}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def __call__(self, points: np.ndarray, dt: float = 1 / 30, sigma: np.ndarray | None = None) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if self._x is None:
            self._x, self._dx = points.copy(), np.zeros_like(points)
            return points.copy()
        # Speeds in face sizes per second, so the parameters do not depend on resolution.
        size = _face_size(points)
        dx = (points - self._x) / dt / size
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * points + (1 - a) * self._x
        return self._x.copy()


class SigmaFilter:
    """Kalman filter per point: state = position, process noise q (face sizes per frame)
    lets the face move, measurement variance = predicted sigma^2."""

    def __init__(self, process_noise: float = 0.002) -> None:
        if process_noise <= 0:
            raise ValueError(f"process_noise must be positive, got {process_noise}")
        self.q = process_noise
        self._x: np.ndarray | None = None
        self._p: np.ndarray | None = None

    def __call__(self, points: np.ndarray, dt: float = 1 / 30, sigma: np.ndarray | None = None) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        r = (np.ones(len(points)) if sigma is None else np.asarray(sigma, np.float64)) ** 2
        if self._x is None:
            self._x, self._p = points.copy(), r.copy()
            return points.copy()
        size = _face_size(points)
        p = self._p + (self.q * size) ** 2
        # A large jump (beyond 3 sigma of both) is motion, not noise: follow it at once.
        jump = np.linalg.norm(points - self._x, axis=-1) ** 2 > 9 * (p + r)
        gain = np.where(jump, 1.0, p / (p + r))
        self._x = self._x + gain[:, None] * (points - self._x)
        self._p = (1 - gain) * p + np.where(jump, r, 0.0)
        return self._x.copy()


SMOOTHERS = {"none": None, "one_euro": OneEuroFilter, "sigma": SigmaFilter}


def make_smoother(name: str):
    if name not in SMOOTHERS:
        raise ValueError(f"smoothing must be one of {sorted(SMOOTHERS)}, got {name!r}")
    cls = SMOOTHERS[name]
    return cls() if cls else None
