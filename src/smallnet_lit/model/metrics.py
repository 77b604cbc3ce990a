"""The field's face-alignment metrics, normalized by the inter-ocular distance
(outer eye corners of the landmark scheme).

NME (per face) = mean_k ||pred_k - gt_k|| / ||gt[left outer corner] - gt[right outer corner]||
FR@t = share of faces with NME > t
AUC@t = area under the cumulative error distribution on [0, t], divided by t. The CED is
a step function, so the area is exact: mean_i max(0, t - NME_i) / t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def point_errors(pred: torch.Tensor, target: torch.Tensor, eye_corners: tuple[int, int]) -> torch.Tensor:
    """(B, K, 2) predictions and targets in the same pixel frame -> (B, K) point errors
    divided by each face's inter-ocular distance."""
    iod = (target[:, eye_corners[0]] - target[:, eye_corners[1]]).norm(dim=-1)
    if (iod <= 0).any():
        raise ValueError("inter-ocular distance is zero for some face: its eye corners coincide")
    return (pred - target).norm(dim=-1) / iod[:, None]


def nme_per_face(pred: torch.Tensor, target: torch.Tensor, eye_corners: tuple[int, int]) -> torch.Tensor:
    """(B, K, 2) predictions and targets in the same pixel frame -> (B,) inter-ocular NME."""
    return point_errors(pred, target, eye_corners).mean(-1)


def failure_rate(nme: torch.Tensor, threshold: float = 0.10) -> torch.Tensor:
    return (nme > threshold).float().mean()


def auc(nme: torch.Tensor, threshold: float = 0.10) -> torch.Tensor:
    return (threshold - nme).clamp(min=0).mean() / threshold


def ced_curve(nme: np.ndarray, threshold: float = 0.10, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x (NME thresholds) and y (share of faces <= x)."""
    x = np.linspace(0.0, threshold, steps)
    nme = np.sort(np.asarray(nme))
    return x, np.searchsorted(nme, x, side="right") / max(len(nme), 1)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def uncertainty_calibration(errors: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Does the predicted sigma (per-axis standard deviation) mean something?

    errors and sigma: per point, same units. For a 2-D Gaussian with per-axis std sigma the
    radial error falls within k sigma with probability 1 - exp(-k^2 / 2): 39.3% for k = 1,
    86.5% for k = 2. Spearman: rank correlation of sigma and error over all points."""
    errors, sigma = np.asarray(errors, np.float64).ravel(), np.asarray(sigma, np.float64).ravel()
    spearman = float(np.corrcoef(_ranks(errors), _ranks(sigma))[0, 1]) if len(errors) > 1 else float("nan")
    return {
        "points": int(len(errors)),
        "within_1_sigma": float((errors <= sigma).mean()),
        "within_2_sigma": float((errors <= 2 * sigma).mean()),
        "expected_within_1_sigma": float(1 - np.exp(-0.5)),
        "expected_within_2_sigma": float(1 - np.exp(-2.0)),
        "spearman_sigma_error": spearman,
    }


class FaceAlignmentMetrics(Metric):
    """Collects per-face NME (and optional per-face attribute flags) across batches and
    ranks; `compute` gives nme, fr, auc and, when attributes were given, nme_<attribute>.

    The states are concatenated across processes before the mean, so under DDP the NME is
    the mean over all faces, not a mean of per-rank means.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(
        self,
        eye_corners: Sequence[int],
        threshold: float = 0.10,
        attribute_names: Sequence[str] = (),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.eye_corners = tuple(eye_corners)
        self.threshold = threshold
        self.attribute_names = tuple(attribute_names)
        self.add_state("nme", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")
        if self.attribute_names:
            self.add_state("attributes", default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        attributes: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> None:
        """`groups`: (B,) index of each face's data source, for per-source figures."""
        self.nme.append(nme_per_face(pred.float(), target.float(), self.eye_corners))
        if groups is None:
            groups = torch.zeros(len(pred), dtype=torch.long, device=pred.device)
        self.groups.append(groups.long())
        if self.attribute_names:
            if attributes is None:
                attributes = torch.zeros(len(pred), len(self.attribute_names), device=pred.device)
            self.attributes.append(attributes.float())

    def per_face(self) -> torch.Tensor:
        return dim_zero_cat(self.nme) if len(self.nme) else torch.zeros(0)

    def compute(self, group_names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """Overall figures; with `group_names` (the data sources, by group index) also
        `<name>/nme`, `<name>/fr`, `<name>/auc` for each source that has faces."""
        nme = self.per_face()
        if nme.numel() == 0:
            raise RuntimeError("FaceAlignmentMetrics.compute() called before any update()")
        result = {"nme": nme.mean(), "fr": failure_rate(nme, self.threshold), "auc": auc(nme, self.threshold)}
        if group_names:
            groups = dim_zero_cat(self.groups)
            for g, name in enumerate(group_names):
                subset = nme[groups == g]
                if subset.numel():
                    result[f"{name}/nme"] = subset.mean()
                    result[f"{name}/fr"] = failure_rate(subset, self.threshold)
                    result[f"{name}/auc"] = auc(subset, self.threshold)
        if self.attribute_names:
            flags = dim_zero_cat(self.attributes)
            for j, name in enumerate(self.attribute_names):
                subset = nme[flags[:, j] > 0]
                # nan marks "no face with this attribute in the data", not a zero error
                result[f"nme_{name}"] = subset.mean() if subset.numel() else torch.tensor(float("nan"))
        return result
