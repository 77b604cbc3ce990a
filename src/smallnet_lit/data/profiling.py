"""Face profiling: re-render an annotated 68-point face as if the head had turned further
(the way 300W-LP was made from 300-W), moving the labels with it.

1. Fit: a mean 3D face (68 points) is fitted to the annotated 2D points by a scaled
   orthographic camera (scale, rotation, translation); each point keeps its annotated x, y
   and takes its depth from the fit, and the fit's rotation is the head pose (yaw, pitch, roll).
2. Anchors: points that turn with the head (forehead, a ring over the ears, hair and neck,
   behind the face) and points that stay (a ring further out and the image border), all
   triangulated (Delaunay) with the face.
3. Turn: the head's points rotate about the head's own vertical (yaw) and sideways (pitch)
   axes through a centre behind the face, are projected, and the photo is warped triangle by
   triangle, far triangles first, so the turned-away cheek is hidden by the near one.
4. Labels: the far-side jaw points move onto the visible outline of the turned face (the
   300-W protocol annotates the visible contour, not the hidden jaw bone); the other points
   are the projected ones.

Reproducible (a seeded generator picks the poses). Faces whose fit fails (too few distinct
points, a degenerate or tiny face, a residual far off the mean shape) are not rendered and
are counted with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smallnet_lit.model.landmarks import IBUG68

# The mean 3D face beside the project (../shared/data/3d, see its README): iBUG order, x to
# image right, y up, z toward the camera, unit = the outer-eye-corner distance.
MEAN_FACE_FILE = Path("3d") / "mean_face_68.txt"
JAW = np.arange(17)
MIN_EYE_DISTANCE = 12.0  # pixels: smaller faces are too coarse to re-render
MAX_FIT_RESIDUAL = 0.25  # mean point residual of the fit, in eye distances (typical: 0.05)


class ProfilingError(ValueError):
    """A face that cannot be profiled (its fit failed); the message says why."""


class FaceLeavesPhoto(ProfilingError):
    """One turn of a face that carries it out of its photo; other turns may still fit."""


def load_mean_face(path: str | Path) -> np.ndarray:
    """(68, 3) mean face in image axes (x right, y down, z toward the camera), eye-distance
    units, made mirror-symmetric with the 68-point flip pairs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean 3D face not found: {path} (../shared/data/3d/mean_face_68.txt; see its README)")
    try:
        face = np.loadtxt(path, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: not 68 lines of 'x y z' ({e})") from None
    if face.shape != (68, 3) or not np.isfinite(face).all():
        raise ValueError(f"{path}: expected 68 lines of 3 finite numbers, got shape {face.shape}")
    face = face * [1.0, -1.0, 1.0]  # y up -> y down (image rows)
    mirrored = face[IBUG68.flip_permutation] * [-1.0, 1.0, 1.0]
    face = (face + mirrored) / 2
    return face - face.mean(0)


@dataclass
class Fit:
    """Scaled orthographic camera: image = scale * (rotation @ X)[:2] + translation."""

    scale: float
    rotation: np.ndarray  # (3, 3), rows: image x, image y, toward the camera
    translation: np.ndarray  # (2,)
    residual: float  # mean point distance between the fit and the points, in eye distances

    @property
    def yaw_pitch_roll(self) -> tuple[float, float, float]:
        """Degrees; yaw > 0: the face turned toward image left (its right cheek shows more)."""
        r = self.rotation
        yaw = math.degrees(math.asin(float(np.clip(r[2, 0], -1, 1))))
        pitch = math.degrees(math.atan2(-r[2, 1], r[2, 2]))
        roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
        return yaw, pitch, roll


def fit_pose(points: np.ndarray, mean_face: np.ndarray) -> Fit:
    """The scaled orthographic camera that best maps `mean_face` onto the 68 `points`
    (affine least squares, then the nearest scaled rotation, then a few Gauss-Newton steps).
    Raises ProfilingError when the points cannot be a face."""
    points = np.asarray(points, np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ProfilingError(f"expected 68 finite 2D points, got shape {points.shape}")
    eye = np.linalg.norm(points[36] - points[45])
    if eye < MIN_EYE_DISTANCE:
        raise ProfilingError(
            f"face too small: {eye:.1f} px between the outer eye corners (at least {MIN_EYE_DISTANCE:g})"
        )
    if np.linalg.matrix_rank(points - points.mean(0), tol=1e-3 * eye) < 2:
        raise ProfilingError("degenerate points: they lie on a line")
    x = np.hstack([mean_face, np.ones((68, 1))])
    affine, *_ = np.linalg.lstsq(x, points, rcond=None)  # (4, 2)
    m = affine[:3].T  # (2, 3)
    norms = np.linalg.norm(m, axis=1)
    if norms.min() < 1e-6:
        raise ProfilingError("degenerate points: no 3D pose fits them")
    r1, r2 = m[0] / norms[0], m[1] / norms[1]
    r3 = np.cross(r1, r2)
    u, _, vt = np.linalg.svd(np.stack([r1, r2, r3 / max(np.linalg.norm(r3), 1e-9)]))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        rotation = u @ np.diag([1, 1, -1]) @ vt
    scale, translation = float(norms.mean()), affine[3]
    params = np.concatenate([_rotvec(rotation), [math.log(scale)], translation])
    for _ in range(10):  # Gauss-Newton on (rotation vector, log scale, translation)
        res = _project(params, mean_face) - points
        jac = np.empty((136, 6))
        for k in range(6):
            step = np.zeros(6)
            step[k] = 1e-6
            jac[:, k] = ((_project(params + step, mean_face) - points) - res).ravel() / 1e-6
        delta, *_ = np.linalg.lstsq(jac, -res.ravel(), rcond=None)
        params = params + delta
        if np.abs(delta).max() < 1e-8:
            break
    rotation, scale, translation = _rodrigues(params[:3]), math.exp(params[3]), params[4:]
    residual = float(np.linalg.norm(_project(params, mean_face) - points, axis=1).mean() / scale)
    if residual > MAX_FIT_RESIDUAL:
        raise ProfilingError(
            f"the points are far from any pose of the mean face (residual {residual:.2f} eye distances)"
        )
    return Fit(scale, rotation, translation, residual)


def _project(params: np.ndarray, face: np.ndarray) -> np.ndarray:
    return math.exp(params[3]) * (face @ _rodrigues(params[:3]).T)[:, :2] + params[4:]


def _rodrigues(v: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(v, np.float64).reshape(3, 1))[0]


def _rotvec(r: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(r, np.float64))[0].ravel()


def head_yaw(points: np.ndarray, mean_face: np.ndarray) -> float:
    """The head's yaw in degrees (absolute) from 68 annotated points; nan when the fit fails."""
    try:
        return abs(fit_pose(points, mean_face).yaw_pitch_roll[0])
    except ProfilingError:
        return math.nan


@dataclass
class Profiled:
    image: np.ndarray  # RGB, the photo's size
    points: np.ndarray  # (68, 2) labels of the turned face
    yaw: float  # the head's yaw after turning, degrees (the fit's convention)
    pitch: float


def _ring(centre: np.ndarray, radii: np.ndarray, n: int, start: float = 0.0) -> np.ndarray:
    angles = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return centre + np.stack([radii[0] * np.cos(angles), radii[1] * np.sin(angles)], 1)


def head_anchors(mean_face: np.ndarray) -> np.ndarray:
    """3D points in the mean face's frame that turn with the head: the forehead above the brows,
    and two rings around the face (cheeks and ears, then hair and neck), set back in depth."""
    brows = mean_face[17:27]
    forehead = []
    for lift, back in ((0.35, 0.12), (0.75, 0.35)):
        row = brows.copy()
        row[:, 1] -= lift
        row[:, 2] -= back + 0.25 * row[:, 0] ** 2
        forehead.append(row)
    centre = mean_face[:, :2].mean(0) + [0.0, -0.15]
    rings = []
    for scale, depth, n in ((1.25, -0.55, 20), (1.65, -1.1, 24)):
        ring = _ring(centre, np.array([0.95, 1.25]) * scale, n)
        rings.append(np.hstack([ring, np.full((n, 1), depth)]))
    return np.vstack([*forehead, *rings])


def profile_face(
    image: np.ndarray,
    points: np.ndarray,
    mean_face: np.ndarray,
    yaw_delta: float,
    pitch_delta: float = 0.0,
) -> Profiled:
    """The photo re-rendered with the head turned by `yaw_delta` (and `pitch_delta`) degrees,
    and its 68 labels. Raises ProfilingError when the face cannot be fitted."""
    fit = fit_pose(points, mean_face)
    h, w = image.shape[:2]
    s, rot, t = fit.scale, fit.rotation, fit.translation
    # Lifted face: annotated x, y; depth from the fit (pixels, toward the camera).
    face_depth = s * (mean_face @ rot.T)[:, 2]
    face3d = np.hstack([points, face_depth[:, None]])
    anchors = head_anchors(mean_face)
    anchors3d = s * (anchors @ rot.T)
    anchors3d[:, :2] += t
    moving = np.vstack([face3d, anchors3d])
    # Turn about the head's own axes through a centre about one eye distance behind the face.
    centre = s * (np.array([0.0, 0.2, -1.0]) @ rot.T)
    centre[:2] += t
    # rot's columns are the head's axes in camera coordinates: x (image right), y (down).
    turn = _rodrigues(
        rot[:, 1] * math.radians(-yaw_delta)
    )  # minus: the fit's yaw grows by yaw_delta @ _rodrigues(rot[:, 0] * math.radians(pitch_delta))
    turned = (moving - centre) @ turn.T + centre
    # What stays: a ring further out (shoulders, background) and the canvas border.
    face_size = np.ptp(points, 0).max()
    ring = _ring(points.mean(0), np.array([1.25, 1.45]) * face_size, 28)
    # A face that fills its photo has its ring and turned anchors off the image: warp on a
    # canvas padded to hold them (edge pixels repeated: no mirrored face parts), so the still
    # border never cuts into the moving head (the mesh would fold and leave the face behind
    # its labels), then crop back.
    reach = np.vstack([ring, moving[:, :2], turned[:, :2]])
    left, top = np.maximum(0, np.ceil(-reach.min(0)) + 2).astype(int)
    right, bottom = np.maximum(0, np.ceil(reach.max(0) - [w - 1, h - 1]) + 2).astype(int)
    canvas = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    offset = np.array([left, top], float)
    still2d = np.vstack([ring + offset, _border(canvas.shape[1], canvas.shape[0], 8)])
    src = np.vstack([moving[:, :2] + offset, still2d])
    dst = np.vstack([turned[:, :2] + offset, still2d])
    depth = np.concatenate([turned[:, 2], np.full(len(still2d), turned[:, 2].min() - s)])
    out = _warp(canvas, src, dst, depth)[top : top + h, left : left + w]
    labels = turned[:68, :2].copy()
    labels[JAW] = _jaw_on_outline(turned[:68], moving[:68])
    # A few points off the edge happen (faces cut by the frame) and are kept as in the source;
    # a turn that carries the face out of the photo makes no training face.
    before, after = _points_outside(points, w, h), _points_outside(labels, w, h)
    if after > before + 2:
        raise FaceLeavesPhoto(
            f"the turned face leaves the photo: {after} of 68 points outside the {w}x{h} image ({before} before)"
        )
    yaw, pitch, _ = Fit(s, turn @ rot, t, fit.residual).yaw_pitch_roll
    return Profiled(out, labels, yaw, pitch)


def _points_outside(points: np.ndarray, w: int, h: int) -> int:
    return int(((points < -0.5) | (points > [w - 0.5, h - 0.5])).any(1).sum())


def _border(w: int, h: int, n: int) -> np.ndarray:
    xs, ys = np.linspace(0, w - 1, n), np.linspace(0, h - 1, n)
    return np.unique(
        np.vstack(
            [np.stack([xs, np.zeros(n)], 1), np.stack([xs, np.full(n, h - 1.0)], 1)]
            + [np.stack([np.zeros(n), ys], 1), np.stack([np.full(n, w - 1.0), ys], 1)]
        ),
        axis=0,
    )


def _warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp of `image` from the `src` mesh to the `dst` mesh (Delaunay of
    `src`), far triangles (by mean depth) first so near ones cover them."""
    from scipy.spatial import Delaunay

    h, w = image.shape[:2]
    triangles = Delaunay(src).simplices
    order = np.argsort(depth[triangles].mean(1))
    out = image.copy()
    for tri in triangles[order]:
        a, b = src[tri].astype(np.float32), dst[tri].astype(np.float32)
        x0, y0 = np.floor(b.min(0)).astype(int)
        x1, y1 = np.ceil(b.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0 or abs(_area(b)) < 0.5:
            continue  # off the image, or turned edge-on
        m = cv2.getAffineTransform(a, (b - [x0, y0]).astype(np.float32))
        patch = cv2.warpAffine(image, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round((b - [x0, y0]) * 16).astype(np.int32), 1, cv2.LINE_AA, shift=4)
        region = out[y0:y1, x0:x1]
        region[mask > 0] = patch[mask > 0]
    return out


def _area(tri: np.ndarray) -> float:
    (ax, ay), (bx, by), (cx, cy) = tri
    return 0.5 * ((bx - ax) * (cy - ay) - (cx - ax) * (by - ay))


def _jaw_on_outline(turned: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Jaw labels of the turned face: on the side that turned away, each jaw point moves
    outward along its row to the face's visible outline (the outermost crossing of the face
    mesh's edges with the row), as the 300-W protocol marks turned faces; the near side stays."""
    from scipy.spatial import Delaunay

    jaw = turned[JAW, :2].copy()
    edges = {
        tuple(sorted((int(a), int(b))))
        for tri in Delaunay(before[:, :2]).simplices
        for a, b in zip(tri, np.roll(tri, 1), strict=True)
    }
    edges = np.array(sorted(edges))
    p, q = turned[edges[:, 0], :2], turned[edges[:, 1], :2]
    # Which side turned away: its jaw points lost depth relative to the other side's.
    left_lost = (turned[0:8, 2] - before[0:8, 2]).mean() < (turned[9:17, 2] - before[9:17, 2]).mean()
    far = np.arange(0, 8) if left_lost else np.arange(9, 17)
    outward = -1.0 if left_lost else 1.0
    for j in far:
        y = jaw[j, 1]
        crosses = (np.minimum(p[:, 1], q[:, 1]) <= y) & (np.maximum(p[:, 1], q[:, 1]) >= y) & (p[:, 1] != q[:, 1])
        if not crosses.any():
            continue
        a, b = p[crosses], q[crosses]
        xs = a[:, 0] + (y - a[:, 1]) / (b[:, 1] - a[:, 1]) * (b[:, 0] - a[:, 0])
        edge_x = xs.min() if outward < 0 else xs.max()
        if (edge_x - jaw[j, 0]) * outward > 0:
            jaw[j, 0] = edge_x
    return jaw


def sample_poses(rng: np.random.Generator, current_yaw: float, max_yaw: float, pitch: float) -> tuple[float, float]:
    """A turn for one profiled copy: the target |yaw| uniform in [min(|current| + 15, max), max],
    on the side the head already faces (or either side for a frontal head), and a pitch turn
    uniform in [-pitch, pitch] degrees."""
    side = math.copysign(1.0, current_yaw) if abs(current_yaw) > 5 else rng.choice([-1.0, 1.0])
    low = min(abs(current_yaw) + 15.0, max_yaw)
    target = side * rng.uniform(low, max_yaw)
    return target - current_yaw, rng.uniform(-pitch, pitch) if pitch > 0 else 0.0
