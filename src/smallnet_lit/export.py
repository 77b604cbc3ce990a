"""Export a checkpoint for deployment (formats: smallnet_lit.inference.deploy):

smallnet-export CKPT [--onnx model.onnx] [--torchscript model.pt] [--slim small.ckpt]
                     [--onnx-int8 model_int8.onnx --calibration FACES_DIR]
                     [--error-calibration error_calibration.json] [--label-offset label_offset.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.inference.deploy import (
    calibration_crops,
    export_onnx,
    export_onnx_int8,
    export_slim,
    export_torchscript,
)

log = logging.getLogger("smallnet_lit.export")


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
    p.add_argument(
        "--error-calibration",
        type=Path,
        help="with --slim: store this error_calibration.json (written by eval) for predicted_nme",
    )
    p.add_argument(
        "--label-offset",
        type=Path,
        help="store this label_offset.json (eval writes one: fit it on faces the model never trained on) in the "
        "model's protocol: photo pixels added to every point, in the --slim checkpoint and the ONNX metadata",
    )
    args = p.parse_args(argv)
    if not (args.onnx or args.torchscript or args.slim or args.onnx_int8):
        p.error("give --onnx PATH, --torchscript PATH, --onnx-int8 PATH and/or --slim PATH")
    if args.onnx_int8 and not args.calibration:
        p.error("--onnx-int8 needs --calibration FACES_DIR (iBUG-format faces; their training split is used)")
    error_calibration = None
    if args.error_calibration:
        if not args.slim:
            p.error("--error-calibration is stored in a --slim checkpoint: give --slim PATH")
        try:
            error_calibration = json.loads(args.error_calibration.read_text())
            float(error_calibration["a"]), float(error_calibration["b"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--error-calibration {args.error_calibration}: not an eval error_calibration.json ({e})")
    label_offset = None
    if args.label_offset:
        try:
            fitted = json.loads(args.label_offset.read_text())
            label_offset = {"offset_x": float(fitted["offset_x"]), "offset_y": float(fitted["offset_y"])}
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--label-offset {args.label_offset}: not an eval label_offset.json ({e})")
        if not (args.slim or args.onnx or args.onnx_int8):
            p.error("--label-offset is stored in a --slim checkpoint or ONNX metadata (TorchScript has none)")
        if not all(abs(v) < 10 for v in label_offset.values()):
            p.error(f"--label-offset {args.label_offset}: {label_offset} px is no annotation convention; check the fit")
    if args.calibration_faces < 1:
        p.error(f"--calibration-faces must be at least 1, got {args.calibration_faces}")
    # Output folders are made (or refused) before the model is loaded and int8 calibrated.
    for option in ("onnx", "torchscript", "slim", "onnx_int8"):
        out = getattr(args, option)
        if out is None:
            continue
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            p.error(f"--{option.replace('_', '-')} {out}: cannot make its folder ({e.strerror or e})")
        if out.is_dir():
            p.error(f"--{option.replace('_', '-')} {out}: is a folder; give a file name")
    from smallnet_lit.model.checkpoints import load_net

    try:
        module = load_net(str(args.checkpoint))
    except (FileNotFoundError, BadInputError) as e:
        log.error("%s", e)
        return 2
    # The model's crop protocol travels with it; so does its error calibration.
    metadata = {k: str(v) for k, v in {**module.protocol, **(label_offset or {})}.items()}
    if stored := module.hparams.get("error_calibration"):
        metadata["error_calibration"] = json.dumps(stored)
    if args.onnx:
        log.info("wrote %s", export_onnx(module.net, args.onnx, module.scheme.name, metadata=metadata))
    if args.torchscript:
        log.info("wrote %s", export_torchscript(module.net, args.torchscript))
    if args.slim:
        log.info("wrote %s", export_slim(args.checkpoint, args.slim, args.decode, error_calibration, label_offset))
    if args.onnx_int8:
        try:
            crops = calibration_crops(args.calibration, module.net.input_size, args.calibration_faces)
        except (FileNotFoundError, BadInputError) as e:
            log.error("calibration faces: %s", e)
            return 2
        log.info("calibrating int8 on %d training faces of %s", len(crops), args.calibration)
        log.info("wrote %s", export_onnx_int8(module.net, args.onnx_int8, module.scheme.name, crops, metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
