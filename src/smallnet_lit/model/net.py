"""SmallNet: a small fully convolutional landmark localizer (no Lightning import here).

Four parts (DESIGN.md):
1. convolution stages: plain 3x3 convs with LeakyReLU, each stage halves the resolution;
2. local receptive-field pooling: the last `pool_levels` stages are pooled with
   non-overlapping windows (kernel = stride) down to the head grid and concatenated;
3. a 1x1 linear transformation to K score maps, 2K offset maps and K (or 2K) log-delta maps;
4. a softmax over the grid cells of each score map.

Decoding (smallnet_lit.model.codec): centre of the most probable cell + offset * stride,
or the soft-argmax expectation over cells. The predicted delta (a standard deviation, in pixels) is the
per-landmark uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smallnet_lit.model import codec
from smallnet_lit.model.codec import HeadOutput
from smallnet_lit.model.landmarks import get_scheme, neighbour_table

LOG_DELTA_MIN, LOG_DELTA_MAX = -6.0, 3.0  # delta in cell units: [0.0025, 20]


class SmallNet(nn.Module):
    def __init__(
        self,
        num_points: int = 98,
        input_size: int = 224,
        widths: Sequence[int] = (64, 64, 128, 128, 256),
        depths: Sequence[int] = (1, 1, 2, 2, 1),
        pool_levels: int = 3,
        pool: str = "max",
        delta_per_axis: bool = False,
        norm: bool = False,
        negative_slope: float = 0.1,
        decode: str = "argmax",
        width_mult: float = 1.0,
        neighbours: int = 0,
        head_stride: int | None = None,
    ) -> None:
        """head_stride: the head grid's stride in input pixels; None: the last stage's (2 ** stages).
        A finer head grid (e.g. 8 with four stages) pools the finer levels down to it and
        upsamples the coarser ones (nearest), so each cell still sees the last stage.

        neighbours: C > 0 adds PIPNet's neighbour regression: each cell also regresses the
        offsets of the C points nearest to its landmark in the scheme's mean shape
        (`landmarks.neighbour_table`), and decoding averages every point's own reading with the
        readings of the landmarks it neighbours (`codec.decode`). 0: DESIGN.md's head."""
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        # width_mult scales every stage (rounded to a multiple of 8): one knob for sweeps.
        widths = [max(8, int(round(w * width_mult / 8)) * 8) if width_mult != 1.0 else int(w) for w in widths]
        depths = list(depths)
        _check_config(num_points, input_size, widths, depths, pool_levels, pool, decode, head_stride)
        self.num_points = num_points
        self.input_size = input_size
        self.stride = int(head_stride or 2 ** len(widths))
        self.grid_size = input_size // self.stride
        self.delta_dims = 2 if delta_per_axis else 1
        self.decode_mode = decode
        self.neighbours = int(neighbours)
        if self.neighbours:
            table = neighbour_table(get_scheme(num_points), self.neighbours)
            # Derived from the scheme, so not saved: checkpoints without it load unchanged.
            self.register_buffer("neighbour_index", torch.as_tensor(table, dtype=torch.long), persistent=False)

        self.stages = nn.ModuleList()
        in_ch = 3
        for width, depth in zip(widths, depths, strict=True):
            layers: list[nn.Module] = []
            for i in range(depth):
                # The first conv of a stage halves the resolution.
                layers.append(nn.Conv2d(in_ch, width, 3, stride=2 if i == 0 else 1, padding=1, bias=not norm))
                if norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.LeakyReLU(negative_slope, inplace=True))
                in_ch = width
            self.stages.append(nn.Sequential(*layers))

        self.pool_levels = pool_levels
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.pools = nn.ModuleList(
            _to_head_grid(2 ** (stage + 1), self.stride, pool_cls)
            for stage in range(len(widths) - pool_levels, len(widths))
        )
        pooled_ch = sum(widths[-pool_levels:])
        k = num_points
        self.head = nn.Conv2d(pooled_ch, k * (3 + self.delta_dims + 2 * self.neighbours), kernel_size=1)
        self._init_weights(negative_slope)

    def _init_weights(self, negative_slope: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start the head near "uniform scores, zero offsets, delta of one cell".
        nn.init.normal_(self.head.weight, std=1e-3)

    def forward_maps(self, images: torch.Tensor) -> HeadOutput:
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"SmallNet expects {self.input_size}x{self.input_size} inputs, got {tuple(images.shape[-2:])}"
            )
        features = []
        x = images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        pooled = [pool(f) for pool, f in zip(self.pools, features[-self.pool_levels :], strict=True)]
        maps = self.head(torch.cat(pooled, dim=1))
        b, _, h, w = maps.shape
        k = self.num_points
        c = self.neighbours
        scores, offsets, log_delta, neighbour_offsets = torch.split(
            maps, [k, 2 * k, self.delta_dims * k, 2 * c * k], dim=1
        )
        return HeadOutput(
            scores=scores,
            offsets=offsets.reshape(b, k, 2, h, w),
            log_delta=log_delta.reshape(b, k, self.delta_dims, h, w).clamp(LOG_DELTA_MIN, LOG_DELTA_MAX),
            stride=self.stride,
            neighbour_offsets=neighbour_offsets.reshape(b, k, c, 2, h, w) if c else None,
            neighbour_index=self.neighbour_index if c else None,
        )

    def decode(self, out: HeadOutput, mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) and sigma (B, K) in input pixels and peak probabilities (B, K):
        `codec.decode` with this net's decoding unless `mode` is given."""
        return codec.decode(out, mode or self.decode_mode)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) in input pixels and per-point sigma (B, K) in pixels."""
        points, sigma, _ = self.decode(self.forward_maps(images))
        return points, sigma


def _to_head_grid(level_stride: int, head_stride: int, pool_cls: type[nn.Module]) -> nn.Module:
    """Brings a level at `level_stride` to the head grid: non-overlapping pooling when it is
    finer, nearest upsampling when it is coarser."""
    if level_stride == head_stride:
        return nn.Identity()
    if level_stride < head_stride:
        factor = head_stride // level_stride
        return pool_cls(kernel_size=factor, stride=factor)
    return nn.Upsample(scale_factor=level_stride // head_stride, mode="nearest")


def _check_config(num_points, input_size, widths, depths, pool_levels, pool, decode, head_stride=None) -> None:
    if num_points < 1:
        raise ValueError(f"num_points must be positive, got {num_points}")
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive channel counts, got {widths}")
    if len(depths) != len(widths) or any(d < 1 for d in depths):
        raise ValueError(f"depths must give a positive conv count for each of the {len(widths)} stages, got {depths}")
    last_stride = 2 ** len(widths)
    if head_stride is not None and (head_stride < 2 or head_stride > last_stride or head_stride & (head_stride - 1)):
        raise ValueError(
            f"head_stride must be a power of two between 2 and the last stage's stride {last_stride}, got {head_stride}"
        )
    if input_size % last_stride:
        raise ValueError(
            f"input_size {input_size} must be a multiple of the last stage's stride {last_stride} ({len(widths)} stages)"
        )
    if not 1 <= pool_levels <= len(widths):
        raise ValueError(f"pool_levels must be between 1 and {len(widths)}, got {pool_levels}")
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if decode not in ("argmax", "soft"):
        raise ValueError(f"decode must be 'argmax' or 'soft', got {decode!r}")


def count_macs(net: SmallNet) -> int:
    """Multiply-accumulates of one forward pass at the net's input size (convs only;
    pooling and activations are negligible)."""
    macs = 0

    def hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        macs += k * out.shape[1] * out.shape[2] * out.shape[3]

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net.forward_maps(torch.zeros(1, 3, net.input_size, net.input_size))
    finally:
        for h in handles:
            h.remove()
    return macs


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
