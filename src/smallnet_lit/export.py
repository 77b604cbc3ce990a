"""Export a checkpoint for deployment:

    python -m smallnet_lit.export CKPT [--onnx model.onnx] [--torchscript model.pt] [--slim small.ckpt]
                                       [--onnx-int8 model_int8.onnx --calibration FACES_DIR]

Both take a normalized (B, 3, S, S) float32 image batch (any B; see
smallnet_lit.data.faces.to_tensor) and return points (B, K, 2) and sigma (B, K) in input
pixels and the peak cell probability (B, K). The ONNX file records the landmark scheme and
input size in its metadata, so `predict --model model.onnx` needs nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smallnet_lit.checkpoints import read_checkpoint, resolve_model
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.net import SmallNet

log = logging.getLogger("smallnet_lit.export")


class Deployable(nn.Module):
    def __init__(self, net: SmallNet) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.decode(self.net.forward_maps(image))


def export_onnx(net: SmallNet, path: Path, scheme: str, opset: int = 18) -> Path:
    import onnx

    model = Deployable(net)
    example = torch.zeros(2, 3, net.input_size, net.input_size)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["image"],
        output_names=["points", "sigma", "confidence"],
        dynamic_axes={"image": {0: "batch"}, "points": {0: "batch"}, "sigma": {0: "batch"}, "confidence": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    for key, value in {"scheme": scheme, "input_size": str(net.input_size)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_onnx_int8(net: SmallNet, path: Path, scheme: str, calibration: np.ndarray) -> Path:
    """ONNX with int8 convolutions (ONNX Runtime static quantization, QDQ, per-channel
    weights), activation ranges calibrated on `calibration` (N, 3, S, S) normalized crops.
    The head conv and the decoding stay float: quantizing them costs 0.2-0.4% NME, the
    rest about 0.01-0.02% (docs/speed.md)."""
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
        export_onnx(net, plain, scheme)
        quant_pre_process(str(plain), str(prepared))
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
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=[head],
        )
    proto = onnx.load(str(path))
    present = {p.key for p in proto.metadata_props}
    for key, value in {"scheme": scheme, "input_size": str(net.input_size), "quantization": "int8"}.items():
        if key not in present:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def calibration_crops(folder: Path, input_size: int, faces: int = 200) -> np.ndarray:
    """Normalized eval crops of up to `faces` training faces (the seeded training side of
    an iBUG-format folder, so validation faces are not used), evenly spread."""
    from smallnet_lit.data.faces import CropConfig, FaceDataset
    from smallnet_lit.data.ibug import IbugFaces

    source = IbugFaces(folder, split="train")
    dataset = FaceDataset(source, input_size, CropConfig())
    picks = np.linspace(0, len(dataset) - 1, min(faces, len(dataset))).round().astype(int)
    return np.stack([dataset[int(i)]["image"].numpy() for i in picks])


def export_torchscript(net: SmallNet, path: Path) -> Path:
    model = Deployable(net)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(2, 3, net.input_size, net.input_size))
    traced.save(str(path))
    return path


def export_slim(checkpoint: Path, path: Path, decode: str | None = None) -> Path:
    """Weights and hyperparameters only (no optimizer or loop state): the file that ships
    with the package; `LandmarkModule.load_from_checkpoint` reads it as usual."""
    full = read_checkpoint(resolve_model(checkpoint))
    slim = {k: full[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version", "epoch", "global_step")}
    # Training-only settings (optimizer, schedule, the distillation teacher) do not ship.
    hparams = {
        k: v
        for k, v in slim["hyper_parameters"].items()
        if k not in ("optimizer", "scheduler", "distill", "channels_last")
    }
    if decode is not None:  # how the shipped model decodes by default
        hparams["net"] = {**hparams["net"], "decode": decode}
    slim["hyper_parameters"] = hparams
    torch.save(slim, path)
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="smallnet-export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--onnx", type=Path)
    p.add_argument("--torchscript", type=Path)
    p.add_argument("--slim", type=Path, help="checkpoint with weights and hyperparameters only")
    p.add_argument("--decode", choices=["argmax", "soft"], help="with --slim: the decoding it uses by default")
    p.add_argument("--onnx-int8", type=Path, help="ONNX with int8 convolutions (needs --calibration)")
    p.add_argument("--calibration", type=Path, help="iBUG-format face folder whose training faces calibrate int8")
    p.add_argument("--calibration-faces", type=int, default=200)
    args = p.parse_args(argv)
    if not (args.onnx or args.torchscript or args.slim or args.onnx_int8):
        p.error("give --onnx PATH, --torchscript PATH, --onnx-int8 PATH and/or --slim PATH")
    if args.onnx_int8 and not args.calibration:
        p.error("--onnx-int8 needs --calibration FACES_DIR (iBUG-format faces; their training split is used)")
    from smallnet_lit.checkpoints import load_model

    try:
        module = load_model(str(args.checkpoint))
    except (FileNotFoundError, BadInputError) as e:
        log.error("%s", e)
        return 2
    if args.onnx:
        log.info("wrote %s", export_onnx(module.net, args.onnx, module.scheme.name))
    if args.torchscript:
        log.info("wrote %s", export_torchscript(module.net, args.torchscript))
    if args.slim:
        log.info("wrote %s", export_slim(args.checkpoint, args.slim, args.decode))
    if args.onnx_int8:
        try:
            crops = calibration_crops(args.calibration, module.net.input_size, args.calibration_faces)
        except (FileNotFoundError, BadInputError) as e:
            log.error("calibration faces: %s", e)
            return 2
        log.info("calibrating int8 on %d training faces of %s", len(crops), args.calibration)
        log.info("wrote %s", export_onnx_int8(module.net, args.onnx_int8, module.scheme.name, crops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
