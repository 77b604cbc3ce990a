"""Face shapes: the 3-D template of the WFLW 98-point topology (the synthetic renderer draws
it, data.synthetic), the frontal reference shape of each scheme (the 300-W mean for ibug68,
the template seen from the front for wflw98) and the neighbours it implies (PIPNet's
neighbour regression)."""

from __future__ import annotations

import numpy as np

from smallnet_lit.model.landmarks import IBUG68, WFLW98, LandmarkScheme


def _arc(x0, x1, y0, bulge, n, sign=-1.0):
    t = np.linspace(0, 1, n)
    return np.stack([x0 + (x1 - x0) * t, y0 + sign * bulge * np.sin(np.pi * t)], axis=1)


def template_3d(rng: np.random.Generator | None = None) -> np.ndarray:
    """(98, 3) face template in units of half the outer inter-ocular distance
    (x right, y down, z toward the camera). With `rng`, shape and expression vary."""
    r = (lambda lo, hi: rng.uniform(lo, hi)) if rng is not None else (lambda lo, hi: (lo + hi) / 2)
    pts = np.zeros((98, 3))
    # Only the image-left half and the midline are built; the right half is mirrored
    # through the scheme's flip pairs, so the template and the scheme cannot disagree.
    a, b, y0 = r(1.05, 1.35), r(1.15, 1.5), r(0.0, 0.2)
    phi = np.linspace(-0.25, np.pi + 0.25, 33)
    pts[0:33, 0], pts[0:33, 1] = -a * np.cos(phi), y0 + b * np.sin(phi)
    pts[0:33, 2] = -0.9 * np.abs(np.cos(phi)) - 0.2
    brow_y, brow_h, brow_t = r(-0.75, -0.5), r(0.05, 0.2), r(0.08, 0.14)
    pts[33:38, :2] = _arc(-1.1, -0.25, brow_y, brow_h, 5)
    pts[38:42, :2] = _arc(-0.3, -1.0, brow_y + brow_t, brow_h * 0.8, 6)[1:5]
    pts[33:42, 2] = 0.1
    nose_len, nose_w = r(0.7, 0.95), r(0.22, 0.35)
    pts[51:55, 1] = np.linspace(-0.3, -0.3 + nose_len, 4)
    pts[51:55, 2] = np.linspace(0.25, 0.7, 4)
    ny = -0.3 + nose_len + 0.12
    pts[55:58] = [[-nose_w, ny - 0.04, 0.3], [-nose_w / 2, ny + 0.02, 0.4], [0.0, ny + 0.04, 0.45]]
    eye_open, eye_w, eye_y = r(0.05, 0.2), r(0.5, 0.62), r(-0.3, -0.15)
    outer, inner = -1.0, -1.0 + eye_w * 1.4
    xs = np.linspace(outer, inner, 5)
    pts[60:65, :2] = np.stack([xs, eye_y - eye_open * np.sin(np.linspace(0, np.pi, 5))], 1)
    pts[65:68, :2] = np.stack([xs[3:0:-1], eye_y + 0.6 * eye_open * np.sin(np.linspace(0, np.pi, 5))[3:0:-1]], 1)
    pts[60:68, 2] = 0.05
    gaze = np.array([r(-0.25, 0.25) * eye_w, r(-0.3, 0.3) * eye_open])
    pts[96, :2] = [(outer + inner) / 2 + gaze[0], eye_y + gaze[1]]
    pts[96, 2] = 0.1
    mouth_y, mouth_w, smile = ny + r(0.35, 0.5), r(0.45, 0.7), r(-0.08, 0.12)
    upper, lower, gap = r(0.06, 0.14), r(0.1, 0.2), r(0.0, 0.25)
    # Pairs are mirrored first -> second: the upper lip is built on the image-left side,
    # the lower lip (numbered right to left) on the image-right side.
    lower_y = mouth_y + gap
    pts[76:80, :2] = [
        [-mouth_w, mouth_y - smile],
        [-0.66 * mouth_w, mouth_y - 0.8 * upper],
        [-0.3 * mouth_w, mouth_y - 1.2 * upper],
        [0.0, mouth_y - 0.9 * upper],
    ]
    pts[83:86, :2] = [
        [0.66 * mouth_w, lower_y + 0.6 * lower],
        [0.3 * mouth_w, lower_y + 0.95 * lower],
        [0.0, lower_y + lower],
    ]
    pts[88:91, :2] = [[-0.85 * mouth_w, mouth_y - 0.9 * smile], [-0.4 * mouth_w, mouth_y], [0.0, mouth_y]]
    pts[93:95, :2] = [[0.4 * mouth_w, lower_y], [0.0, lower_y]]
    pts[76:96, 2] = 0.35 - 0.3 * np.abs(pts[76:96, 0])
    # Midline points (no partner) keep x = 0; the second point of each pair mirrors the first.
    for left, right in WFLW98.flip_pairs:
        pts[right] = pts[left] * [-1, 1, 1]
    return pts


# The mean shape of the 1,213 faces in 300-W's training folders (../shared/data/300w-train),
# each rotated and scaled so that its outer eye corners lie at (-0.5, 0) and (0.5, 0): which
# points lie near which (`neighbour_table`).
# fmt: off
_IBUG68_MEAN_SHAPE_X = (
    -0.82, -0.81, -0.79, -0.74, -0.66, -0.52, -0.36, -0.19, 0.01, 0.20, 0.37, 0.53, 0.66, 0.74, 0.79, 0.82,
    0.83, -0.67, -0.56, -0.42, -0.27, -0.13, 0.13, 0.28, 0.43, 0.57, 0.66, 0.01, 0.01, 0.01, 0.01, -0.17,
    -0.08, 0.00, 0.09, 0.17, -0.50, -0.41, -0.30, -0.21, -0.30, -0.41, 0.21, 0.31, 0.41, 0.50, 0.42, 0.31,
    -0.32, -0.20, -0.08, 0.00, 0.08, 0.20, 0.32, 0.21, 0.09, 0.00, -0.08, -0.20, -0.27, -0.08, 0.00, 0.08,
    0.27, 0.09, 0.00, -0.08,
)
_IBUG68_MEAN_SHAPE_Y = (
    0.02, 0.24, 0.45, 0.67, 0.86, 1.03, 1.16, 1.27, 1.30, 1.26, 1.15, 1.02, 0.85, 0.66, 0.45, 0.24, 0.03,
    -0.14, -0.24, -0.27, -0.25, -0.20, -0.21, -0.26, -0.27, -0.24, -0.14, -0.03, 0.11, 0.25, 0.39, 0.49,
    0.52, 0.54, 0.52, 0.49, 0.00, -0.05, -0.05, 0.02, 0.04, 0.04, 0.02, -0.05, -0.05, 0.00, 0.03, 0.04, 0.75,
    0.70, 0.67, 0.69, 0.67, 0.70, 0.75, 0.86, 0.91, 0.92, 0.91, 0.86, 0.76, 0.74, 0.75, 0.74, 0.76, 0.81,
    0.82, 0.81,
)
# fmt: on


def reference_shape(scheme: LandmarkScheme) -> np.ndarray:
    """(K, 2) frontal shape in inter-ocular units, mirror-symmetric (so that mirrored points
    get mirrored neighbours): the 300-W mean for ibug68; for wflw98 (no WFLW training faces
    here) the synthetic faces' template seen from the front."""
    if scheme.num_points == IBUG68.num_points:
        shape = np.stack([_IBUG68_MEAN_SHAPE_X, _IBUG68_MEAN_SHAPE_Y], axis=1)
        return (shape + shape[scheme.flip_permutation] * [-1.0, 1.0]) / 2
    return template_3d()[:, :2] / 2  # template units: half the inter-ocular distance


def neighbour_table(scheme: LandmarkScheme, count: int) -> np.ndarray:
    """(K, count) indices of each point's `count` nearest other points in the reference
    shape, nearest first (PIPNet's neighbours, which each cell also regresses)."""
    if not 0 < count < scheme.num_points:
        raise ValueError(f"neighbours must be between 1 and {scheme.num_points - 1} for {scheme.name}, got {count}")
    shape = reference_shape(scheme)
    dist = np.linalg.norm(shape[:, None] - shape[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :count]
