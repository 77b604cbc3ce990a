"""The dual loss L = alpha * L_conf + beta * L_loc (DESIGN.md)."""

from __future__ import annotations

import math

import torch
from torch import nn

from smallnet_lit.model.codec import HeadOutput, cell_centre, encode


def log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(log_p)) for log_p <= 0, accurate near both ends (Maechler 2012)."""
    log_p = log_p.clamp(max=-1e-7)
    return torch.where(log_p > -math.log(2.0), torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))


class DualLoss(nn.Module):
    """alpha * L_conf + beta * L_loc.

    L_conf: per landmark, p = softmax over cells, y one-hot at the ground-truth cell;
      l = 1/2 mean_pos(-log p) + 1/2 mean_neg(-log(1 - p)).
    L_loc: at the ground-truth cell, per axis, the Gaussian negative log-likelihood
      (t - t_hat)^2 / (2 delta^2) + log delta, t the offset in cell units; with
      `fixed_delta` it is the plain squared error (t - t_hat)^2 / 2 (delta = 1, no log term).
    loc_radius r > 0 extends L_loc from the ground-truth cell to the cells of the grid
      within r cells of it, each regressing the offset from its own centre to the point.
      Soft-argmax decoding averages the offsets of all cells by their probability, and a
      neighbouring cell that holds some of it then points at the landmark too instead of
      at its own interior (docs/results.md: the diagnosis, and runs that found no gain). loc_weighting
      says how the cells count: `prob` adds each neighbour's loss weighted by its
      (detached) probability to the ground-truth cell's, so cells count as much as
      decoding reads them; `uniform` averages the (2r+1)^2 cells. r = 0 is DESIGN.md's loss.
    Both are averaged over the landmarks that lie inside the grid (and are marked valid).
    With neighbour maps (SmallNet's `neighbours`), `neighbour_weight` times PIPNet's
    neighbour loss is added: at landmark k's ground-truth cell, the L1 distance (cell units)
    between each neighbour's regressed offset and its true offset from that cell's centre,
    averaged over the pairs whose two points are marked valid (and k inside the grid).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        fixed_delta: bool = False,
        loc_radius: int = 0,
        loc_weighting: str = "prob",
        neighbour_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got alpha={alpha}, beta={beta}")
        if loc_radius < 0 or loc_radius != int(loc_radius):
            raise ValueError(f"loc_radius must be a whole number of cells >= 0, got {loc_radius}")
        if loc_weighting not in ("prob", "uniform"):
            raise ValueError(f"loc_weighting must be 'prob' or 'uniform', got {loc_weighting!r}")
        self.alpha, self.beta, self.fixed_delta = alpha, beta, fixed_delta
        if neighbour_weight < 0:
            raise ValueError(f"neighbour_weight must be >= 0, got {neighbour_weight}")
        self.loc_radius, self.loc_weighting = int(loc_radius), loc_weighting
        self.neighbour_weight = neighbour_weight

    def forward(
        self, out: HeadOutput, points: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, k, h, w = out.scores.shape
        cell, t, inside = encode(points, out.stride, (h, w))
        mask = inside if valid is None else inside & valid.bool()
        weight = mask.float()
        n = weight.sum().clamp(min=1.0)

        log_p = out.scores.flatten(2).log_softmax(-1)  # (B, K, N)
        pos = torch.zeros_like(log_p, dtype=torch.bool).scatter_(2, cell[..., None], True)
        nll_pos = -log_p.gather(2, cell[..., None]).squeeze(2)
        nll_neg = -(log1mexp(log_p) * (~pos)).sum(2) / (h * w - 1)
        conf = (0.5 * nll_pos + 0.5 * nll_neg) if h * w > 1 else nll_pos
        loss_conf = (conf * weight).sum() / n

        # The cells whose offsets are trained: the ground-truth cell and its neighbours
        # within loc_radius that lie on the grid, each with its own offset target.
        r = self.loc_radius
        steps = torch.arange(-r, r + 1, device=points.device)
        d_row, d_col = torch.meshgrid(steps, steps, indexing="ij")
        d_row, d_col = d_row.flatten(), d_col.flatten()  # (M,), M = (2r+1)^2
        row, col = cell // w, cell % w
        n_row, n_col = row[..., None] + d_row, col[..., None] + d_col  # (B, K, M)
        on_grid = ((n_row >= 0) & (n_row < h) & (n_col >= 0) & (n_col < w)).float()
        n_cell = (n_row.clamp(0, h - 1) * w + n_col.clamp(0, w - 1))[:, :, None, :]  # (B, K, 1, M)
        target = t[..., None] - torch.stack([d_col, d_row])  # (B, K, 2, M)
        t_hat = out.offsets.flatten(3).gather(3, n_cell.expand(b, k, 2, -1))
        sq = (target - t_hat) ** 2
        if self.fixed_delta:
            loc = 0.5 * sq
        else:
            d = out.log_delta.shape[2]
            log_delta = out.log_delta.flatten(3).gather(3, n_cell.expand(b, k, d, -1))
            loc = sq / (2 * torch.exp(2 * log_delta)) + log_delta  # (B,K,1,M) broadcasts over x and y
        loc = loc.sum(2)  # (B, K, M)
        if self.loc_weighting == "uniform":
            loc = (loc * on_grid).sum(-1) / on_grid.sum(-1)  # mean over the trained cells
        else:
            cell_weight = log_p.detach().exp().gather(2, n_cell.squeeze(2)) * on_grid
            cell_weight[..., (2 * r + 1) ** 2 // 2] = 1.0  # the ground-truth cell (d_row = d_col = 0)
            loc = (loc * cell_weight).sum(-1)
        loss_loc = (loc * weight).sum() / n

        total = self.alpha * loss_conf + self.beta * loss_loc
        parts = {"loss_conf": loss_conf.detach(), "loss_loc": loss_loc.detach()}
        if out.neighbour_offsets is not None:
            loss_nb = self._neighbour_loss(out, points, cell, mask, valid)
            total = total + self.neighbour_weight * loss_nb
            parts["loss_neighbours"] = loss_nb.detach()
        return total, parts

    @staticmethod
    def _neighbour_loss(
        out: HeadOutput, points: torch.Tensor, cell: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        b, k, c, _, h, w = out.neighbour_offsets.shape
        index = out.neighbour_index  # (K, C)
        target = (points / out.stride)[:, index] - cell_centre(cell, w)[:, :, None]  # (B, K, C, 2), cell units
        at_cell = cell[:, :, None, None, None].expand(b, k, c, 2, 1)
        pred = out.neighbour_offsets.flatten(4).gather(4, at_cell).squeeze(4)
        pair = mask[:, :, None].expand(b, k, c)
        if valid is not None:
            pair = pair & valid.bool()[:, index]
        pair = pair.float()
        return ((target - pred).abs().sum(-1) * pair).sum() / pair.sum().clamp(min=1.0)


class DistillLoss(nn.Module):
    """Knowledge distillation from a teacher's head maps (same head grid).

    cells: KL(p_teacher || p_student) of each landmark's cell distribution, both softened
      by `temperature` (times T^2, the usual scaling so gradients keep their size);
    offsets: squared error of the student's offsets against the teacher's, per cell,
      weighted by the teacher's cell probability (what soft-argmax decoding reads);
    features: squared error of the student's pooled head features, through a learned 1x1
      projection to the teacher's channels (FitNets), against the teacher's, each feature map
      standardized per sample so the teachers' scale does not matter. The projection is
      trained with the student and dropped at export.
    """

    def __init__(
        self,
        cells: float = 1.0,
        offsets: float = 1.0,
        temperature: float = 1.0,
        features: float = 0.0,
        student_channels: int = 0,
        teacher_channels: int = 0,
    ) -> None:
        super().__init__()
        if cells < 0 or offsets < 0 or features < 0 or temperature <= 0:
            raise ValueError(
                f"distillation weights must be >= 0 and temperature > 0, got cells={cells}, "
                f"offsets={offsets}, features={features}, temperature={temperature}"
            )
        self.cells, self.offsets, self.temperature, self.features = cells, offsets, temperature, features
        self.projection = None
        if features > 0:
            if student_channels < 1 or teacher_channels < 1:
                raise ValueError("feature distillation needs the student's and the teacher's feature channels")
            self.projection = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student: HeadOutput, teacher: HeadOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if student.scores.shape != teacher.scores.shape:
            raise ValueError(
                f"teacher and student head grids differ: {tuple(teacher.scores.shape[1:])} vs "
                f"{tuple(student.scores.shape[1:])} (the same head grid needed: input size / head stride)"
            )
        t = self.temperature
        log_p_s = (student.scores.flatten(2) / t).log_softmax(-1)
        log_p_t = (teacher.scores.flatten(2) / t).log_softmax(-1)
        kd_cells = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean() * t * t
        p_t = teacher.scores.flatten(2).softmax(-1)  # (B, K, N), untempered: the decoder's weights
        sq = ((student.offsets - teacher.offsets) ** 2).sum(2).flatten(2)  # (B, K, N)
        kd_offsets = (p_t * sq).sum(-1).mean()
        total = self.cells * kd_cells + self.offsets * kd_offsets
        parts = {"loss_kd_cells": kd_cells.detach(), "loss_kd_offsets": kd_offsets.detach()}
        if self.projection is not None:
            if student.features is None or teacher.features is None:
                raise ValueError("feature distillation needs both nets' features (an ensemble teacher has none)")
            kd_features = (
                (_standardize(self.projection(student.features)) - _standardize(teacher.features)) ** 2
            ).mean()
            total = total + self.features * kd_features
            parts["loss_kd_features"] = kd_features.detach()
        return total, parts


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Each sample's feature maps to zero mean and unit variance (over channels and cells)."""
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)).view_as(x)
