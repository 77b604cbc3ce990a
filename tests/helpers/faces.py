"""Generated data in both on-disk formats (WFLW lists, 300-W .pts), drawn from the synthetic
faces, and where the real shared data lives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from smallnet_lit.data.synthetic import render_face
from smallnet_lit.model.landmarks import WFLW98_TO_IBUG68
from smallnet_lit.model.shapes import template_3d

# ../shared/data beside the checkout; tests marked `shared_data` are skipped without it.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def write_wflw(root: Path, n_train: int = 12, n_test: int = 8, size: int = 160) -> Path:
    """A WFLW-layout folder of synthetic faces (official file names and line format)."""
    ann_dir = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann_dir.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 11), ("test", n_test, 12)):
        lines = []
        for i in range(n):
            image, points = render_face(np.random.default_rng([seed, i]), size)
            rel = f"{i % 3}--Event/{split}_{i}.jpg"
            (root / "WFLW_images" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "WFLW_images" / rel), image[..., ::-1])
            box = [*points.min(0), *points.max(0)]
            attrs = [i % 2, (i // 2) % 2, 0, 0, int(i == 0), 0]
            fields = [f"{v:.4f}" for v in points.ravel()] + [str(int(b)) for b in box] + [str(a) for a in attrs] + [rel]
            lines.append(" ".join(fields))
        (ann_dir / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_mean_face(path: Path) -> Path:
    """A mean 3D 68-point face file (the format of ../shared/data/3d) made from the synthetic
    renderer's template, so tests that fit head poses need no shared data."""
    face = template_3d()[WFLW98_TO_IBUG68] / 2  # template: half eye distances, y down
    face[:, 1] *= -1  # the file's convention: y up
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, face)
    return path


def write_pts(path: Path, points: np.ndarray, header: bool = True) -> None:
    body = "\n".join(f"{x + 1:.4f} {y + 1:.4f}" for x, y in points)  # .pts is 1-based
    text = f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n" if header else body + "\n"
    path.write_text(text)


def write_ibug(root: Path, n_photos: int = 10, faces_per_photo: int = 2, size: int = 160) -> Path:
    """A 300-W-format tree of synthetic faces: <set>/<photo>_<n>.jpg + .pts."""
    for p in range(n_photos):
        sub = root / ("afw" if p % 2 else "helen/trainset")
        sub.mkdir(parents=True, exist_ok=True)
        for n in range(1, faces_per_photo + 1):
            image, points = render_face(np.random.default_rng([21, p, n]), size)
            cv2.imwrite(str(sub / f"photo{p}_{n}.jpg"), image[..., ::-1])
            write_pts(sub / f"photo{p}_{n}.pts", points[WFLW98_TO_IBUG68], header=bool(n % 2))
    return root


def synthetic_photo(path: Path, seed: int = 0, size: int = 200) -> np.ndarray:
    image, points = render_face(np.random.default_rng(seed), size)
    cv2.imwrite(str(path), image[..., ::-1])
    return points[WFLW98_TO_IBUG68]
