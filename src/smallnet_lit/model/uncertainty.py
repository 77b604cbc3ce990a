"""A face's predicted error in the units users know (NME), from the model's own sigma.

The raw measure is the root mean square of the face's predicted sigmas over its inter-ocular
distance (both from the prediction, so it needs no ground truth): `face_uncertainty`, the
error the model expects, in NME units. (On the faces68 validation split it told failures
better than the mean, median or log-mean sigma, with about the same rank correlation:
docs/results.md.) A power law fitted on a
validation split, NME ~ exp(a) * u ** b (least squares in log-log), turns it into
`predicted_nme`: monotone, so it ranks faces exactly as the raw measure does, and two numbers
that travel in the checkpoint (hyper_parameters["error_calibration"]) and the ONNX metadata.
"""

from __future__ import annotations

import numpy as np

FAILURE_NME = 0.08  # a face is counted as failed above this NME (issue: AUROC for NME > 8%)


def face_uncertainty(points: np.ndarray, sigma: np.ndarray, eye_corners: tuple[int, int]) -> np.ndarray:
    """(N,) root mean square of each face's predicted sigma over its predicted inter-ocular distance."""
    points, sigma = np.asarray(points, np.float64), np.asarray(sigma, np.float64)
    iod = np.linalg.norm(points[..., eye_corners[0], :] - points[..., eye_corners[1], :], axis=-1)
    return np.sqrt((sigma**2).mean(-1)) / np.maximum(iod, 1e-6)


def fit_error_calibration(uncertainty: np.ndarray, nme: np.ndarray, fitted_on: str = "") -> dict:
    """{a, b, faces, fitted_on}: log(nme) = a + b * log(uncertainty), least squares."""
    u, e = np.asarray(uncertainty, np.float64), np.asarray(nme, np.float64)
    keep = (u > 0) & (e > 0) & np.isfinite(u) & np.isfinite(e)
    if keep.sum() < 10:
        raise ValueError(f"error calibration needs at least 10 faces with a positive sigma and NME, got {keep.sum()}")
    b, a = np.polyfit(np.log(u[keep]), np.log(e[keep]), 1)
    return {"a": float(a), "b": float(b), "faces": int(keep.sum()), "fitted_on": fitted_on}


def predicted_nme(uncertainty: np.ndarray | float, calibration: dict | None) -> np.ndarray | None:
    if not calibration:
        return None
    u = np.maximum(np.asarray(uncertainty, np.float64), 1e-9)
    return np.exp(calibration["a"]) * u ** calibration["b"]


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the boolean `positives` (ties counted half):
    the chance that a random positive scores above a random negative."""
    scores, positives = np.asarray(scores, np.float64), np.asarray(positives, bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(_average_ranks(np.asarray(a, float)), _average_ranks(np.asarray(b, float)))[0, 1])


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    # ties share their mean rank
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(values) < len(x):
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def uncertainty_report(uncertainty: np.ndarray, nme: np.ndarray, fr_threshold: float = 0.10) -> dict[str, float]:
    """How well the predicted error tells failures: AUROC for NME > 8%, Spearman with the true
    NME, and the NME and FR left after dropping the 10% / 20% least certain faces."""
    u, e = np.asarray(uncertainty, np.float64), np.asarray(nme, np.float64)
    report = {
        "auroc_failure": auroc(u, e > FAILURE_NME),
        "spearman": spearman(u, e),
        "failures": int((e > FAILURE_NME).sum()),
    }
    for drop in (10, 20):
        keep = u <= np.quantile(u, 1 - drop / 100) if len(u) else np.zeros(0, bool)
        report[f"nme_keep_{100 - drop}"] = float(e[keep].mean()) if keep.any() else float("nan")
        report[f"fr_keep_{100 - drop}"] = float((e[keep] > fr_threshold).mean()) if keep.any() else float("nan")
    return report
