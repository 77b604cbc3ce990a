"""Export a checkpoint for deployment:

    python -m smallnet_lit.export CKPT [--onnx model.onnx] [--torchscript model.pt] [--slim small.ckpt]

Both take a normalized (B, 3, S, S) float32 image batch (any B; see
smallnet_lit.data.faces.to_tensor) and return points (B, K, 2) and sigma (B, K) in input
pixels and the peak cell probability (B, K). The ONNX file records the landmark scheme and
input size in its metadata, so `predict --model model.onnx` needs nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch import nn

from smallnet_lit.checkpoints import read_checkpoint
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


def export_torchscript(net: SmallNet, path: Path) -> Path:
    model = Deployable(net)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(2, 3, net.input_size, net.input_size))
    traced.save(str(path))
    return path


def export_slim(checkpoint: Path, path: Path, decode: str | None = None) -> Path:
    """Weights and hyperparameters only (no optimizer or loop state): the file that ships
    with the package; `LandmarkModule.load_from_checkpoint` reads it as usual."""
    full = read_checkpoint(checkpoint)
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
    args = p.parse_args(argv)
    if not (args.onnx or args.torchscript or args.slim):
        p.error("give --onnx PATH, --torchscript PATH and/or --slim PATH")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
