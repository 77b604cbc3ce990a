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
from smallnet_lit.model.landmarks import get_scheme
from smallnet_lit.model.shapes import neighbour_table

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
        reparam: bool = False,
        block: str = "conv",
    ) -> None:
        """head_stride: the head grid's stride in input pixels; None: the last stage's (2 ** stages).
        A finer head grid (e.g. 8 with four stages) pools the finer levels down to it and
        upsamples the coarser ones (nearest), so each cell still sees the last stage.

        neighbours: C > 0 adds PIPNet's neighbour regression: each cell also regresses the
        offsets of the C points nearest to its landmark in the scheme's mean shape
        (`landmarks.neighbour_table`), and decoding averages every point's own reading with the
        readings of the landmarks it neighbours (`codec.decode`). 0: DESIGN.md's head.

        block: "conv", DESIGN.md's plain 3x3 convs; "dw", depthwise-separable layers (a 3x3
        depthwise conv and a 1x1 pointwise conv, each with LeakyReLU) after a plain first conv;
        "ghost", GhostNet's modules after a plain first conv: a 3x3 conv makes half of each
        layer's channels and a cheap 3x3 depthwise conv on them the other half (`GhostConv`).
        reparam: train each conv with parallel branches (RepVGG / MobileOne: a 1x1 conv and, where
        the shapes allow, an identity, each with BatchNorm) that `deployed()` folds into one conv
        with bias: the deployed net is the plain stack of the same `block`, without `norm`."""
        super().__init__()
        self.config = {
            "num_points": num_points, "input_size": input_size, "widths": list(widths), "depths": list(depths),
            "pool_levels": pool_levels, "pool": pool, "delta_per_axis": delta_per_axis, "norm": norm,
            "negative_slope": negative_slope, "decode": decode, "width_mult": width_mult,
            "neighbours": neighbours, "head_stride": head_stride, "reparam": reparam, "block": block,
        }  # fmt: skip
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        # width_mult scales every stage (rounded to a multiple of 8): one knob for sweeps.
        widths = [max(8, int(round(w * width_mult / 8)) * 8) if width_mult != 1.0 else int(w) for w in widths]
        depths = list(depths)
        _check_config(num_points, input_size, widths, depths, pool_levels, pool, decode, head_stride, block)
        self.reparam = bool(reparam)
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

        def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
            if reparam:
                return [RepConv(cin, cout, kernel, stride, groups)]
            layer = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=not norm)
            return [layer, nn.BatchNorm2d(cout)] if norm else [layer]

        self.stages = nn.ModuleList()
        in_ch = 3
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            layers: list[nn.Module] = []
            for i in range(depth):
                stride = 2 if i == 0 else 1  # the first conv of a stage halves the resolution
                stem = stage == 0 and i == 0  # the stem stays a plain conv
                if block == "ghost" and not stem:
                    half = width // 2
                    primary = [*conv(in_ch, half, 3, stride), nn.LeakyReLU(negative_slope, inplace=True)]
                    cheap = [*conv(half, half, 3, groups=half), nn.LeakyReLU(negative_slope, inplace=True)]
                    layers.append(GhostConv(primary, cheap))  # each half has its activation
                else:
                    if block == "dw" and not stem:
                        layers += conv(in_ch, in_ch, 3, stride, groups=in_ch)
                        layers.append(nn.LeakyReLU(negative_slope, inplace=True))
                        layers += conv(in_ch, width, 1)
                    else:
                        layers += conv(in_ch, width, 3, stride)
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

    def deployed(self) -> SmallNet:
        """The net as it is deployed: with `reparam`, a new plain net (no BatchNorm) whose
        convs are the folded branches, equal in output; otherwise this net."""
        if not self.reparam:
            return self
        plain = SmallNet(**{**self.config, "reparam": False, "norm": False})
        folded = {
            f"{name}.{key}": value
            for name, module in self.named_modules()
            if isinstance(module, RepConv)
            for key, value in module.fold().state_dict().items()
        }
        rest = {k: v for k, v in self.state_dict().items() if not k.startswith("stages.")}
        plain.load_state_dict({**rest, **folded})
        return plain.to(next(self.parameters()).device).train(self.training)

    def grown(self) -> SmallNet:
        """The inverse of `deployed` for a trained net with BatchNorm: a new net with RepVGG
        branches whose every conv and BatchNorm is its RepConv's main branch, and whose 1x1
        and identity branches start with BatchNorm scales and shifts of zero. It computes
        exactly what this net does, in training and eval, and the branches grow from there."""
        if self.reparam or not self.config.get("norm"):
            raise ValueError("RepVGG branches grow on a plain net with BatchNorm (reparam false, norm true)")
        grown = SmallNet(**{**self.config, "reparam": True})
        convs = [m for m in self.stages.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in self.stages.modules() if isinstance(m, nn.BatchNorm2d)]
        reps = [m for m in grown.stages.modules() if isinstance(m, RepConv)]
        with torch.no_grad():
            for conv, norm, rep in zip(convs, norms, reps, strict=True):
                rep.main.load_state_dict(nn.Sequential(conv, norm).state_dict())
                for branch in (rep.scale[1] if rep.scale is not None else None, rep.identity):
                    if branch is not None:
                        nn.init.zeros_(branch.weight)
                        nn.init.zeros_(branch.bias)
        rest = {k: v for k, v in self.state_dict().items() if not k.startswith("stages.")}
        grown.load_state_dict({**grown.state_dict(), **rest})
        return grown.to(next(self.parameters()).device).train(self.training)

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
        features = torch.cat(pooled, dim=1)
        maps = self.head(features)
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
            features=features,
        )

    def decode(self, out: HeadOutput, mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) and sigma (B, K) in input pixels and peak probabilities (B, K):
        `codec.decode` with this net's decoding unless `mode` is given."""
        return codec.decode(out, mode or self.decode_mode)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) in input pixels and per-point sigma (B, K) in pixels."""
        points, sigma, _ = self.decode(self.forward_maps(images))
        return points, sigma


class GhostConv(nn.Module):
    """GhostNet's module in place of a 3x3 conv with its activation: the primary conv makes half
    of the output channels, a 3x3 depthwise conv on them (the cheap operation) the other half,
    and the two halves are concatenated: about half the MACs of the plain conv."""

    def __init__(self, primary: list[nn.Module], cheap: list[nn.Module]) -> None:
        super().__init__()
        self.primary = nn.Sequential(*primary)
        self.cheap = nn.Sequential(*cheap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.primary(x)
        return torch.cat([half, self.cheap(half)], dim=1)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class RepConv(nn.Module):
    """A conv trained as the sum of parallel branches, each with BatchNorm: the kxk conv, a
    1x1 conv (when k > 1) and the identity (when the input and output shapes match).
    `fold()` gives the single kxk conv with bias that computes the same sum (RepVGG)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.kernel, self.groups, self.stride = kernel, groups, stride
        self.main = _conv_bn(cin, cout, kernel, stride, groups)
        # The 1x1 branch runs at stride 1 on the strided input (the same samples as a strided
        # 1x1 conv): torch 2.13's strided 1x1 conv crashes in NHWC backward for 3 or 8 channels.
        self.scale = _conv_bn(cin, cout, 1, 1, groups) if kernel > 1 else None
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.scale is not None:
            s = self.stride
            y = y + self.scale(x[:, :, ::s, ::s] if s > 1 else x)
        if self.identity is not None:
            y = y + self.identity(x)
        return y

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        conv = self.main[0]
        weight, bias = _fold_bn(conv.weight, self.main[1])
        pad = self.kernel // 2
        if self.scale is not None:
            w1, b1 = _fold_bn(self.scale[0].weight, self.scale[1])
            weight, bias = weight + nn.functional.pad(w1, [pad] * 4), bias + b1
        if self.identity is not None:
            eye = torch.zeros_like(weight)
            per_group = weight.shape[1]
            channels = torch.arange(weight.shape[0])
            eye[channels, channels % per_group, pad, pad] = 1.0
            wi, bi = _fold_bn(eye, self.identity)
            weight, bias = weight + wi, bias + bi
        folded = nn.Conv2d(
            conv.in_channels, conv.out_channels, self.kernel, conv.stride, padding=pad, groups=self.groups, bias=True
        )
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
        return folded.to(weight.device)


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a bias-free conv followed by `bn` (in eval mode), as one conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def _to_head_grid(level_stride: int, head_stride: int, pool_cls: type[nn.Module]) -> nn.Module:
    """Brings a level at `level_stride` to the head grid: non-overlapping pooling when it is
    finer, nearest upsampling when it is coarser."""
    if level_stride == head_stride:
        return nn.Identity()
    if level_stride < head_stride:
        factor = head_stride // level_stride
        return pool_cls(kernel_size=factor, stride=factor)
    return nn.Upsample(scale_factor=level_stride // head_stride, mode="nearest")


def _check_config(
    num_points, input_size, widths, depths, pool_levels, pool, decode, head_stride=None, block="conv"
) -> None:
    if block not in ("conv", "dw", "ghost"):
        raise ValueError(
            f"block must be 'conv' (plain 3x3 convs), 'dw' (depthwise-separable) or 'ghost' (GhostNet), got {block!r}"
        )
    if num_points < 1:
        raise ValueError(f"num_points must be positive, got {num_points}")
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive channel counts, got {widths}")
    if block == "ghost" and any(w % 2 for w in widths):
        raise ValueError(f"block 'ghost' makes half of each layer's channels twice: widths must be even, got {widths}")
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
    """Multiply-accumulates of one forward pass of the deployed net at its input size (convs
    only; pooling and activations are negligible)."""
    net = net.deployed()
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
    """Parameters of the deployed net (a re-parameterized net's branches are folded)."""
    if isinstance(net, SmallNet):
        net = net.deployed()
    return sum(p.numel() for p in net.parameters())
