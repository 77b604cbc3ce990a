"""Quantization-aware fine-tuning: simulate, in the float net, the int8 the deployed ONNX runs.

`inference.deploy.export_onnx_int8` quantizes every conv but the head with ONNX Runtime's static
QDQ quantization: the conv's input and output tensors as uint8 (asymmetric, per tensor, ranges
calibrated min-max) and its weights per output channel, symmetric, to 7 bits (`reduce_range`:
integers -64..64, so AVX2's pair sums cannot saturate). `attach` makes the net round the same
tensors the same way in the forward pass (each conv's weights and output, the image, and every
activation that feeds a conv, where the export puts its Quantize nodes), with straight-through gradients,
so that fine-tuning moves the weights to where rounding costs least. The net's state_dict does
not change (the ranges are running statistics kept outside it), so a fine-tuned checkpoint
deploys and exports like any other; the export calibrates its own ranges, as always.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

WEIGHT_LEVELS = {7: 64, 8: 127}  # symmetric int8 range: reduce_range (7 bits) or full


class _RunningRange:
    """The min-max range of a tensor, a moving average over training batches (frozen in eval)."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = x.detach().min().clamp(max=0.0), x.detach().max().clamp(min=0.0)
        if self.low is None:
            self.low, self.high = low, high
        elif training:
            self.low = self.low + self.momentum * (low - self.low)
            self.high = self.high + self.momentum * (high - self.high)
        return self.low, self.high


def fake_quant_uint8(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """x rounded to the 256 levels of [low, high] (0 exactly representable), straight-through."""
    scale = float((high - low).clamp(min=1e-8)) / 255.0
    zero = int(round(-float(low) / scale))
    return torch.fake_quantize_per_tensor_affine(x, scale, min(max(zero, 0), 255), 0, 255)


def fake_quant_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric rounding of conv weights, as ONNX Runtime quantizes them."""
    levels = WEIGHT_LEVELS[bits]
    scale = (weight.detach().abs().flatten(1).amax(1) / levels).clamp(min=1e-12).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -levels, levels)


class _QuantConv:
    """Replaces one conv's forward: quantized weights and output (and input, for the stem's image)."""

    def __init__(self, conv: nn.Conv2d, bits: int, momentum: float, quantize_input: bool) -> None:
        self.conv, self.bits = conv, bits
        self.input_range = _RunningRange(momentum) if quantize_input else None
        self.output_range = _RunningRange(momentum)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        conv, training = self.conv, self.conv.training
        if self.input_range is not None:
            x = fake_quant_uint8(x, *self.input_range(x, training))
        w = fake_quant_weight(conv.weight, self.bits)
        y = F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return fake_quant_uint8(y, *self.output_range(y, training))


class _QuantActivation:
    """Replaces an activation's forward: its output quantized, as the next conv's input is."""

    def __init__(self, module: nn.Module, momentum: float) -> None:
        self.module, self.range = module, _RunningRange(momentum)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = type(self.module).forward(self.module, x)
        return fake_quant_uint8(y, *self.range(y, self.module.training))


def check_settings(settings: dict) -> None:
    """A clear error for a bad `model.quant_aware` before any data is read."""
    unknown = sorted(set(settings) - {"weight_bits", "momentum"})
    if unknown:
        raise ValueError(f"model.quant_aware: unknown settings {unknown} (known: weight_bits, momentum)")
    if settings.get("weight_bits", 7) not in WEIGHT_LEVELS:
        raise ValueError(f"model.quant_aware.weight_bits must be 7 (every x86 CPU) or 8, got {settings['weight_bits']}")
    if not 0 < settings.get("momentum", 0.01) <= 1:
        raise ValueError(f"model.quant_aware.momentum must be in (0, 1], got {settings['momentum']}")


def attach(net: nn.Module, weight_bits: int = 7, momentum: float = 0.01) -> int:
    """Make every conv of a deployed (plain) SmallNet but its head compute as the int8 export
    does; returns how many convs were changed. `detach` undoes it.

    The export quantizes each conv's input tensor where it is made (the image; an activation's
    output), so every reader of that tensor, the head's pooling too, sees the rounded values;
    the last activation feeds only the pooling and stays float."""
    check_settings({"weight_bits": weight_bits, "momentum": momentum})
    if getattr(net, "reparam", False) or any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        raise ValueError("quantization-aware training needs the deployed net: no RepVGG branches, no BatchNorm")
    if getattr(net, "config", {}).get("block") == "ghost":
        # The export also quantizes a ghost module's concatenated output (the next conv's
        # input) on a scale of its own, a rounding this simulation does not model.
        raise ValueError("quantization-aware training supports block 'conv' and 'dw', not 'ghost'")
    layers = [m for m in net.stages.modules() if isinstance(m, nn.Conv2d | nn.LeakyReLU)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):  # instance attributes: not in state_dict
            layer.forward = _QuantConv(layer, weight_bits, momentum, quantize_input=i == 0)
        elif i < len(layers) - 1:
            layer.forward = _QuantActivation(layer, momentum)
    return len(convs)


def detach(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m.__dict__.get("forward"), _QuantConv | _QuantActivation):
            del m.forward
