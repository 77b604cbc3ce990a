"""Pictures: CED curves and landmark overlays. (matplotlib and the metrics are imported by
the CED plot alone: prediction draws overlays with OpenCV and starts without them.)"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from smallnet_lit.model.landmarks import LandmarkScheme


def plot_ced(curves: Mapping[str, np.ndarray], path: str | Path, threshold: float = 0.10, title: str = "") -> Path:
    """Cumulative error distribution of per-face NME, one line per named set of faces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from smallnet_lit.model.metrics import auc, ced_curve

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for name, nme in curves.items():
        nme = np.asarray(nme)
        x, y = ced_curve(nme, threshold)
        area = float(auc(torch.as_tensor(nme), threshold)) if len(nme) else float("nan")
        ax.plot(x, y, label=f"{name} (n={len(nme)}, AUC@{threshold:g}={area:.3f})")
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
    sigma: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of the RGB uint8 image with the points drawn (and the targets in red).
    Sizes follow the face, not the photo, so small faces in a crowd stay visible and
    large ones are not covered; with `scheme` the parts (contour, brows, nose, eyes, lips)
    are joined by lines; with `sigma` (pixels) each point gets a circle of its predicted
    standard deviation."""
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
    if sigma is not None:
        for (x, y), s in zip(points, np.asarray(sigma, np.float64), strict=True):
            centre = (round(float(x)), round(float(y)))
            cv2.circle(out, centre, max(1, round(float(s))), (255, 200, 0), 1, cv2.LINE_AA)
    if target is not None:
        for x, y in np.asarray(target):
            cv2.circle(out, (round(float(x)), round(float(y))), radius, (255, 0, 0), -1, cv2.LINE_AA)
    for x, y in points:
        cv2.circle(out, (round(float(x)), round(float(y))), radius, colour, -1, cv2.LINE_AA)
    return out


# predicted NME -> overlay colour (RGB): trustworthy, doubtful, likely wrong
ERROR_COLOURS = ((0.05, (0, 220, 0)), (0.08, (255, 190, 0)), (float("inf"), (255, 40, 40)))


def error_colour(predicted_nme: float | None) -> tuple[int, int, int]:
    if predicted_nme is None:
        return (0, 255, 0)
    return next(colour for limit, colour in ERROR_COLOURS if predicted_nme <= limit)


def draw_predicted_error(image: np.ndarray, points: np.ndarray, predicted_nme: float) -> np.ndarray:
    """Writes "~3.2%" (the face's predicted NME) above its points, in its error colour."""
    import cv2

    points = np.asarray(points, np.float64)
    extent = float(np.ptp(points, axis=0).max())
    scale = max(0.35, extent / 250)
    thickness = max(1, round(scale * 2))
    text = f"NME~{100 * predicted_nme:.1f}%"
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = int(np.clip(points[:, 0].min(), 0, max(0, image.shape[1] - w)))
    y = int(np.clip(points[:, 1].min() - 0.15 * extent, h + 2, image.shape[0] - 2))
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(
        image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, error_colour(predicted_nme), thickness, cv2.LINE_AA
    )
    return image


def contact_sheet(tiles: list[tuple[np.ndarray, str]], columns: int = 6, size: int = 240) -> np.ndarray:
    """One RGB image of many: each (image, caption) fitted into a size x size cell (aspect
    kept, on dark grey) with its caption below, in rows of `columns`."""
    import cv2

    caption_h = max(14, size // 12)
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (size + caption_h), min(columns, len(tiles)) * size, 3), 40, np.uint8)
    for n, (image, caption) in enumerate(tiles):
        scale = size / max(image.shape[:2])
        h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
        thumb = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (n // columns) * (size + caption_h), (n % columns) * size
        y0, x0 = top + (size - h) // 2, left + (size - w) // 2
        sheet[y0 : y0 + h, x0 : x0 + w] = thumb
        font_scale = caption_h / 30
        text = caption
        while len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] > size - 8:
            text = "..." + text[4:]  # keep the end: the file name and the face count
        cv2.putText(
            sheet,
            text,
            (left + 4, top + size + caption_h - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
    return sheet
