"""Head maps built by hand for the codec, loss and decoding tests."""

import torch

from smallnet_lit.model.codec import cell_centre, encode


def neighbour_maps_at_truth(
    points: torch.Tensor, index: torch.Tensor, stride: int, grid: int, fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For points (1, K, 2) and a neighbour table index (K, C) on a grid x grid head: each
    landmark's ground-truth cell (1, K) and neighbour-offset maps (1, K, C, 2, grid, grid)
    that read every neighbour exactly at that cell (elsewhere `fill`, zeros by default)."""
    k, c = index.shape
    cell, _, _ = encode(points, stride, (grid, grid))
    truth = points[:, index] / stride - cell_centre(cell, grid)[:, :, None]  # (1, K, C, 2)
    maps = torch.zeros(1, k, c, 2, grid * grid) if fill is None else fill.reshape(1, k, c, 2, grid * grid).clone()
    maps.scatter_(4, cell[:, :, None, None, None].expand(1, k, c, 2, 1), truth[..., None])
    return cell, maps.reshape(1, k, c, 2, grid, grid)
