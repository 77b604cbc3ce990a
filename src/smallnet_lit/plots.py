"""Pictures: CED curves and landmark overlays."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from smallnet_lit.landmarks import LandmarkScheme  # noqa: E402
from smallnet_lit.metrics import ced_curve  # noqa: E402


def plot_ced(curves: Mapping[str, np.ndarray], path: str | Path, threshold: float = 0.10, title: str = "") -> Path:
    """Cumulative error distribution of per-face NME, one line per named set of faces."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for name, nme in curves.items():
        nme = np.asarray(nme)
        x, y = ced_curve(nme, threshold)
        auc = float(np.clip(threshold - nme, 0, None).mean() / threshold) if len(nme) else float("nan")
        ax.plot(x, y, label=f"{name} (n={len(nme)}, AUC@{threshold:g}={auc:.3f})")
    ax.set_xlim(0, threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (inter-ocular)")
    ax.set_ylabel("share of faces")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title or "Cumulative error distribution")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


CLOSED_PARTS = ("left_eye", "right_eye", "outer_lips", "inner_lips")


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    colour=(0, 255, 0),
    target: np.ndarray | None = None,
    scheme: LandmarkScheme | None = None,
) -> np.ndarray:
    """A copy of the RGB uint8 image with the points drawn (and the targets in red).
    Sizes follow the face, not the photo, so small faces in a crowd stay visible and
    large ones are not covered; with `scheme` the parts (contour, brows, nose, eyes, lips)
    are joined by lines."""
    import cv2

    out = np.ascontiguousarray(image).copy()
    points = np.asarray(points, np.float64)
    extent = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    radius = max(1, round(extent / 90))
    thickness = max(1, round(extent / 150))
    if scheme is not None:
        for name, idx in scheme.parts.items():
            if len(idx) > 1 and name != "pupils":
                line = np.round(points[list(idx)]).astype(np.int32)
                cv2.polylines(out, [line], name in CLOSED_PARTS, colour, thickness, cv2.LINE_AA)
    if target is not None:
        for x, y in np.asarray(target):
            cv2.circle(out, (round(float(x)), round(float(y))), radius, (255, 0, 0), -1, cv2.LINE_AA)
    for x, y in points:
        cv2.circle(out, (round(float(x)), round(float(y))), radius, colour, -1, cv2.LINE_AA)
    return out
