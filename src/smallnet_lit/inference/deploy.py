"""Deployment formats of a trained SmallNet: ONNX (float, or int8 convolutions calibrated
on training faces), TorchScript, and slim checkpoints (weights + hyperparameters).

Every format takes a normalized (B, 3, S, S) float32 image batch (any B; see
smallnet_lit.data.faces.to_tensor) and returns points (B, K, 2) and sigma (B, K) in input
pixels and the peak cell probability (B, K). The ONNX file records the landmark scheme and
input size in its metadata, so `predict --model model.onnx` needs nothing else."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smallnet_lit.model.checkpoints import model_protocol, read_checkpoint, resolve_model
from smallnet_lit.model.net import SmallNet


@contextlib.contextmanager
def _working_directory(path: str | Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Tracing warns about SmallNet's input-size check, a Python branch it records as a constant:
    right for a net whose input size is fixed, so the warning is noise to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


class Deployable(nn.Module):
    def __init__(self, net: SmallNet) -> None:
        super().__init__()
        self.net = net.deployed().eval()  # re-parameterized branches folded into plain convs

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.decode(self.net.forward_maps(image))


def export_onnx(
    net: SmallNet, path: Path, scheme: str, opset: int = 18, metadata: dict[str, str] | None = None
) -> Path:
    """metadata: more entries for the ONNX metadata (e.g. error_calibration, as JSON)."""
    import onnx

    model = Deployable(net)
    example = torch.zeros(2, 3, net.input_size, net.input_size)
    with _quiet_tracing():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["points", "sigma", "confidence"],
            dynamic_axes={
                "image": {0: "batch"},
                "points": {0: "batch"},
                "sigma": {0: "batch"},
                "confidence": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    for key, value in {"scheme": scheme, "input_size": str(net.input_size), **(metadata or {})}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_onnx_int8(
    net: SmallNet,
    path: Path,
    scheme: str,
    calibration: np.ndarray,
    metadata: dict[str, str] | None = None,
    weight_bits: int = 7,
) -> Path:
    """ONNX with int8 convolutions (ONNX Runtime static quantization, QDQ, per-channel
    weights), activation ranges calibrated on `calibration` (N, 3, S, S) normalized crops.
    The head conv and the decoding stay float: quantizing them costs far more accuracy
    than the rest (docs/speed.md).

    Weights are quantized to 7 bits (`reduce_range`): on AVX2 CPUs ONNX Runtime multiplies
    uint8 activations by int8 weights with VPMADDUBSW, whose int16 pair sums saturate with
    full-range weights (0.15% NME lost on the 300-W split); VNNI CPUs do not saturate. With
    7-bit weights no pair sum can overflow, so the result is the same on both (docs/speed.md).
    `weight_bits=8` exports the full-range weights, to measure that difference (tools.int8_check)."""
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 (every x86 CPU) or 8 (full range), got {weight_bits}")
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration.astype(np.float32)[:, None])

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"image": item}

    with tempfile.TemporaryDirectory() as tmp:
        plain, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        export_onnx(net, plain, scheme, metadata=metadata)
        # auto_merge: the symbolic shape inference otherwise gives up on the Resize of a head
        # grid finer than the last stage (model.net.head_stride).
        with _working_directory(tmp):  # its shape inference may leave files in the cwd
            quant_pre_process(str(plain), str(prepared), auto_merge=True)
        graph = onnx.load(str(prepared)).graph
        head = [n.name for n in graph.node if n.op_type == "Conv"][-1]
        quantize_static(
            str(prepared),
            str(path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=weight_bits == 7,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=[head],
        )
    proto = onnx.load(str(path))
    present = {p.key for p in proto.metadata_props}
    entries = {"scheme": scheme, "input_size": str(net.input_size), "quantization": "int8", **(metadata or {})}
    for key, value in entries.items():
        if key not in present:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def calibration_crops(folder: Path, input_size: int, faces: int = 200) -> np.ndarray:
    """Normalized eval crops of up to `faces` training faces (the seeded training side of
    an iBUG-format folder, so validation faces are not used), evenly spread."""
    from smallnet_lit.data.crop import CropConfig
    from smallnet_lit.data.faces import FaceDataset
    from smallnet_lit.data.ibug import IbugFaces

    source = IbugFaces(folder, split="train")
    dataset = FaceDataset(source, input_size, CropConfig())
    picks = np.linspace(0, len(dataset) - 1, min(faces, len(dataset))).round().astype(int)
    return np.stack([dataset[int(i)]["image"].numpy() for i in picks])


def export_torchscript(net: SmallNet, path: Path) -> Path:
    model = Deployable(net)
    with torch.no_grad(), _quiet_tracing():
        traced = torch.jit.trace(model, torch.zeros(2, 3, net.input_size, net.input_size))
    traced.save(str(path))
    return path


def export_slim(
    checkpoint: Path,
    path: Path,
    decode: str | None = None,
    error_calibration: dict | None = None,
    label_offset: dict | None = None,
) -> Path:
    """Weights and hyperparameters only (no optimizer or loop state): the file that ships
    with the package; `LandmarkModule.load_from_checkpoint` reads it as usual."""
    full = read_checkpoint(resolve_model(checkpoint))
    slim = {k: full[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version", "epoch", "global_step")}
    # training-only weights (the feature-distillation projection) do not ship either
    slim["state_dict"] = {k: v for k, v in slim["state_dict"].items() if not k.startswith("distill_fn.")}
    # Training-only settings (optimizer, schedule, the distillation teacher) do not ship.
    hparams = {
        k: v
        for k, v in slim["hyper_parameters"].items()
        if k not in ("optimizer", "scheduler", "distill", "channels_last", "compile", "quant_aware")
    }
    if decode is not None:  # how the shipped model decodes by default
        hparams["net"] = {**hparams["net"], "decode": decode}
    if error_calibration is not None:  # predicted_nme of every face (model.uncertainty)
        hparams["error_calibration"] = error_calibration
    if label_offset is not None:  # the training files' convention (checkpoints.PROTOCOL_DEFAULTS)
        hparams["protocol"] = {**model_protocol(hparams), **label_offset}
    slim["hyper_parameters"] = hparams
    torch.save(slim, path)
    return path
