"""The grid codec: how landmark positions are written as targets on the head grid (`encode`)
and read back from the head's maps (`decode`). One place for the geometry the loss, the
network's decoding and every exported model share: a point at input pixel p lies in cell
floor(p / stride), at offset p / stride - (cell + 0.5) from that cell's centre, in cell units."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HeadOutput:
    """Raw head maps. Shapes: scores (B, K, H, W), offsets (B, K, 2, H, W) as (dx, dy)
    in cell units from the cell centre, log_delta (B, K, D, H, W) with D = 1 or 2.
    With neighbour regression (SmallNet's `neighbours` = C): neighbour_offsets
    (B, K, C, 2, H, W), the offsets of landmark k's C neighbours read in k's maps, and
    neighbour_index (K, C), which points those are."""

    scores: torch.Tensor
    offsets: torch.Tensor
    log_delta: torch.Tensor
    stride: int
    neighbour_offsets: torch.Tensor | None = None
    neighbour_index: torch.Tensor | None = None
    # The pooled features the head reads (B, C, H, W): feature-level distillation's target.
    features: torch.Tensor | None = None


def encode(
    points: torch.Tensor, stride: int, grid_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For points (B, K, 2) in input pixels: the flat index of the cell holding each point
    (B, K), the offset from that cell's centre in cell units (B, K, 2), and whether the
    point lies inside the grid at all (B, K)."""
    h, w = grid_hw
    cell_xy = points / stride
    inside = (cell_xy[..., 0] >= 0) & (cell_xy[..., 0] < w) & (cell_xy[..., 1] >= 0) & (cell_xy[..., 1] < h)
    col = cell_xy[..., 0].floor().clamp(0, w - 1)
    row = cell_xy[..., 1].floor().clamp(0, h - 1)
    offset = cell_xy - torch.stack([col + 0.5, row + 0.5], dim=-1)
    return (row * w + col).long(), offset, inside


def cell_centre(cell: torch.Tensor, width: int) -> torch.Tensor:
    """Centres (..., 2) as (x, y) in cell units of the flat cell indices `cell` on a grid
    `width` cells wide."""
    return torch.stack([cell % width, cell // width], dim=-1).float() + 0.5


def decode(out: HeadOutput, mode: str = "argmax") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points (B, K, 2) and sigma (B, K) in input pixels, and the peak probability (B, K)
    of each landmark's cell distribution. `argmax`: centre of the most probable cell + its
    offset, with that cell's delta; `soft`: the expectation of (cell centre + offset) over the
    cell distribution, with the standard deviation of that mixture (per axis): each cell's own
    delta plus the spread of the cells' readings around the point (law of total variance), so
    that a point split between distant cells is reported as uncertain."""
    b, k, h, w = out.scores.shape
    prob = out.scores.flatten(2).softmax(-1)  # (B, K, H*W)
    cell_centres = _cell_centres(h, w, out.scores.device)  # (H*W, 2) in cell units
    offsets = out.offsets.flatten(3).transpose(2, 3)  # (B, K, H*W, 2)
    variance = (2 * out.log_delta).exp().mean(2).flatten(2)  # (B, K, H*W), isotropic: mean over axes
    peak, best = prob.max(-1)
    if mode not in ("argmax", "soft"):
        raise ValueError(f"decode must be 'argmax' or 'soft', got {mode!r}")
    pos = _read(offsets, prob, best, cell_centres, mode)
    if mode == "argmax":
        sigma = variance.gather(2, best[..., None]).squeeze(2).sqrt()
    else:
        spread = ((cell_centres + offsets - pos[:, :, None]) ** 2).mean(-1)  # per axis, (B, K, H*W)
        sigma = (prob * (variance + spread)).sum(2).sqrt()
    if out.neighbour_offsets is not None:
        c = out.neighbour_index.shape[1]
        # (B, K, C, H*W, 2) -> readings (B, K*C, 2), read with landmark k's cell distribution
        nb_offsets = out.neighbour_offsets.flatten(4).transpose(3, 4).reshape(b, k * c, h * w, 2)
        nb_prob, nb_best = prob.repeat_interleave(c, dim=1), best.repeat_interleave(c, dim=1)
        readings = _read(nb_offsets, nb_prob, nb_best, cell_centres, mode)
        votes = torch.zeros(k, k * c, device=pos.device).scatter_(0, out.neighbour_index.reshape(1, -1), 1.0)
        pos = (pos + votes @ readings) / (1.0 + votes.sum(1))[:, None]
    return pos * out.stride, sigma * out.stride, peak


def _read(
    offsets: torch.Tensor, prob: torch.Tensor, best: torch.Tensor, cell_centres: torch.Tensor, mode: str
) -> torch.Tensor:
    """Positions (B, N, 2) in cell units from offsets (B, N, H*W, 2) and cell distributions
    prob (B, N, H*W) with their most probable cells best (B, N)."""
    if mode == "argmax":
        b, n = best.shape
        return cell_centres[best] + offsets.gather(2, best[..., None, None].expand(b, n, 1, 2)).squeeze(2)
    return (prob[..., None] * (cell_centres + offsets)).sum(2)


def mixture(outputs: list[HeadOutput]) -> HeadOutput:
    """The head maps of an ensemble: the mean of the cell distributions, and per cell the
    offsets and log-deltas averaged with the members' probabilities as weights, so that
    soft-argmax decoding of the mixture is the mean of the members' soft-argmax points.
    Neighbour maps are left out (the mixture is a teacher: distillation reads cells and offsets)."""
    if len({(o.scores.shape[1:], o.stride) for o in outputs}) != 1:
        raise ValueError("ensemble members must share the head grid (same input size and stage count)")
    prob = torch.stack([_cell_prob(o) for o in outputs])  # (M, B, K, H, W)
    mean_prob = prob.mean(0)
    weight = prob / (prob.sum(0, keepdim=True) + 1e-12)
    offsets = (weight[:, :, :, None] * torch.stack([o.offsets for o in outputs])).sum(0)
    log_delta = (weight[:, :, :, None] * torch.stack([o.log_delta for o in outputs])).sum(0)
    return HeadOutput(mean_prob.clamp_min(1e-12).log(), offsets, log_delta, outputs[0].stride)


def mirror(out: HeadOutput, flip_permutation, shift: torch.Tensor | None = None) -> HeadOutput:
    """The maps of a mirrored crop (`images.flip(-1)`) read back into the crop's frame: cells
    mirrored and landmarks re-ordered by the scheme's flip permutation; a point at x mirrors
    to width - 1 - x (pixel centres at integers, as `LandmarkScheme.flip_points`), so a
    reading's x offset o becomes -o - 1 / stride. `shift` (B,): pixels added to every x after,
    a mirror shift (`average_with_flip`'s). Features are mirrored in space only (their channels
    keep their meaning of the mirrored face); neighbour maps are left out."""
    perm = torch.as_tensor(flip_permutation, device=out.scores.device).long()
    offsets = out.offsets.flip(-1)[:, perm].clone()
    offsets[:, :, 0] = -offsets[:, :, 0] - 1.0 / out.stride
    if shift is not None:
        offsets[:, :, 0] += shift.to(offsets)[:, None, None, None] / out.stride
    features = out.features.flip(-1) if out.features is not None else None
    return HeadOutput(
        out.scores.flip(-1)[:, perm], offsets, out.log_delta.flip(-1)[:, perm], out.stride, features=features
    )


def _cell_prob(out: HeadOutput) -> torch.Tensor:
    return out.scores.flatten(2).softmax(-1).reshape(out.scores.shape)


def _cell_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32) + 0.5,
        torch.arange(w, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).reshape(h * w, 2)


def upsample(images: torch.Tensor, size: int) -> tuple[torch.Tensor, float, float]:
    """Square crops (B, C, S, S) read at `size` pixels (bicubic), with the map of their points:
    a point at crop pixel p lies at factor * p + shift in the upsampled crop (pixel centres at
    integers, as the crops are cut: align_corners=False)."""
    factor = size / images.shape[-1]
    if factor == 1:
        return images, 1.0, 0.0
    up = torch.nn.functional.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    return up, factor, (factor - 1) / 2


def regrid(out: HeadOutput, cells: int, stride: int, factor: float = 1.0, shift: float = 0.0) -> HeadOutput:
    """A teacher's maps on another head grid (`cells` x `cells` at `stride`), for distillation
    between nets whose grids differ. Each teacher cell is a Gaussian at its reading (cell centre
    + offset; its delta as the spread), mapped into the student's pixels (p = (p_teacher - shift)
    / factor: `upsample`'s map); the student's cell distribution is the mixture's mass in each of
    its cells (the edge cells reach out, as `encode` clamps), its offsets the mixture's mean
    within the cell, its features the teacher's resampled (bilinear). Neighbour maps are left out."""
    h, w = out.scores.shape[-2:]
    prob = out.scores.flatten(2).softmax(-1)  # (B, K, J)
    scale = out.stride / factor / stride  # teacher cell units -> student cell units
    reading = out.offsets.flatten(3).transpose(2, 3) + _cell_centres(h, w, out.scores.device)  # (B, K, J, 2)
    centre = (reading * out.stride - shift) / factor / stride
    spread = (out.log_delta.flatten(3).transpose(2, 3).exp() * scale).expand_as(centre).clamp_min(1e-3)
    edges = torch.arange(cells + 1, device=centre.device, dtype=centre.dtype)
    lo, hi = edges[:-1].clone(), edges[1:].clone()
    lo[0], hi[-1] = -torch.inf, torch.inf
    mass, mean = [], []
    for axis in (0, 1):  # separable: per axis, each component's mass in each column / row and its mean there
        mu, sd = centre[..., axis, None], spread[..., axis, None]  # (B, K, J, 1)
        z_lo, z_hi = (lo - mu) / sd, (hi - mu) / sd
        m = torch.special.ndtr(z_hi) - torch.special.ndtr(z_lo)
        density = (_normal_pdf(z_lo) - _normal_pdf(z_hi)) / m.clamp_min(1e-12)
        mass.append(m)
        mean.append(torch.minimum(torch.maximum(mu + sd * density, lo), hi))
    cell_mass = torch.einsum("bkj,bkjc,bkjr->bkrc", prob, mass[0], mass[1]).clamp_min(1e-12)
    mean_x = torch.einsum("bkj,bkjc,bkjr->bkrc", prob, mass[0] * mean[0], mass[1]) / cell_mass
    mean_y = torch.einsum("bkj,bkjc,bkjr->bkrc", prob, mass[0], mass[1] * mean[1]) / cell_mass
    middle = edges[:-1] + 0.5
    offsets = torch.stack([mean_x - middle, mean_y - middle[:, None]], dim=2)  # (B, K, 2, H', W')
    log_spread = spread.log()  # (B, K, J, 2); one delta per cell where the teacher has one
    if out.log_delta.shape[2] == 1:
        log_spread = log_spread.mean(-1, keepdim=True)
    log_delta = torch.stack(
        [torch.einsum("bkj,bkjc,bkjr->bkrc", prob * d, mass[0], mass[1]) / cell_mass for d in log_spread.unbind(-1)],
        dim=2,
    )
    features = out.features
    if features is not None:
        features = torch.nn.functional.interpolate(features, size=(cells, cells), mode="bilinear", align_corners=False)
    return HeadOutput(cell_mass.log(), offsets, log_delta, stride, features=features)


def _normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z.nan_to_num(posinf=1e4, neginf=-1e4) ** 2) * 0.3989422804014327
