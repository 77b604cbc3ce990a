"""Does int8 keep a model's accuracy on this CPU's ONNX Runtime kernels? In three steps, so
the middle one can run under another CPU model (e.g. `valgrind --tool=none`, whose CPU has no
AVX-512, makes ONNX Runtime take its AVX2 kernels):

    python -m smallnet_lit.tools.int8_check prepare DIR [--model smallnet_300w_fast] [--faces ../shared/data/300w-train] [--weight-bits 8]
    python -m smallnet_lit.tools.int8_check run DIR --tag native
    valgrind --tool=none "$(python -c 'import sys; print(sys.executable)')" -m smallnet_lit.tools.int8_check run DIR --tag avx2 --files int8
    python -m smallnet_lit.tools.int8_check score DIR

`prepare` writes the float and int8 ONNX exports (int8 calibrated on the folder's training
faces) and the validation split's eval crops; `run` (numpy and ONNX Runtime only, no torch)
predicts the crops with each file on one thread; `score` prints the NME of every run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def prepare(out: Path, model: str, faces: Path, weight_bits: int = 7) -> None:
    from smallnet_lit.data.crop import CropConfig
    from smallnet_lit.data.faces import FaceDataset
    from smallnet_lit.data.ibug import IbugFaces
    from smallnet_lit.inference.deploy import calibration_crops, export_onnx, export_onnx_int8
    from smallnet_lit.model.checkpoints import load_net

    loaded = load_net(model)
    size, scheme = loaded.net.input_size, loaded.scheme
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(loaded.net, out / "float.onnx", scheme.name)
    export_onnx_int8(
        loaded.net, out / "int8.onnx", scheme.name, calibration_crops(faces, size), weight_bits=weight_bits
    )
    val = FaceDataset(IbugFaces(faces, split="val"), size, CropConfig())
    items = [val[i] for i in range(len(val))]
    np.save(out / "crops.npy", np.stack([it["image"].numpy() for it in items]))
    np.save(out / "to_photo.npy", np.stack([it["to_photo"].numpy() for it in items]))
    np.save(out / "truth.npy", np.stack([it["points"].numpy() for it in items]))
    (out / "prepared.json").write_text(
        json.dumps(
            {
                "model": model,
                "faces": str(faces),
                "eye_corners": scheme.eye_corners,
                # the model's protocol offset (photo pixels), as eval and prediction add it
                "offset": [loaded.protocol["offset_x"], loaded.protocol["offset_y"]],
            }
        )
    )
    print(f"prepared {len(items)} validation faces of {faces} and the exports of {model} in {out}")


def run(out: Path, tag: str, files: list[str]) -> None:
    import onnxruntime as ort

    crops = np.load(out / "crops.npy")
    for name in files:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(out / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        np.save(out / f"points_{name}_{tag}.npy", session.run(None, {"image": crops})[0])
        print(f"{name}: predicted {len(crops)} faces ({tag})", flush=True)


def nme_of_runs(out: Path) -> dict[str, float]:
    """Mean NME of every run in `out` by its name (float_native, int8_avx2, ...), and `faces`."""
    from smallnet_lit.data.crop import apply_affine

    meta = json.loads((out / "prepared.json").read_text())
    affine, truth = np.load(out / "to_photo.npy"), np.load(out / "truth.npy")
    a, b = meta["eye_corners"]
    t = apply_affine(affine, truth)
    iod = np.linalg.norm(t[:, a] - t[:, b], axis=-1)
    result = {"faces": len(t)}
    offset = np.asarray(meta.get("offset", [0.0, 0.0]))  # prepared before offsets: none
    for f in sorted(out.glob("points_*.npy")):
        errors = np.linalg.norm(apply_affine(affine, np.load(f)) + offset - t, axis=-1).mean(-1)
        result[f.stem[len("points_") :]] = float((errors / iod).mean())
    return result


def score(out: Path) -> None:
    meta = json.loads((out / "prepared.json").read_text())
    nme = nme_of_runs(out)
    print(f"{meta['model']} on {nme.pop('faces')} validation faces of {meta['faces']} (NME, inter-ocular):")
    for name, value in nme.items():
        print(f"  {name:<20} {100 * value:.3f}%")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.int8_check", description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=["prepare", "run", "score"])
    p.add_argument("dir", type=Path)
    p.add_argument("--model", default="smallnet_300w_fast", help="prepare: a shipped name or checkpoint")
    p.add_argument("--faces", type=Path, default=Path("../shared/data/300w-train"), help="prepare: iBUG folder")
    p.add_argument(
        "--weight-bits", type=int, choices=[7, 8], default=7,
        help="prepare: int8 weights as exported (7) or full range (8: saturates on AVX2)",
    )  # fmt: skip
    p.add_argument("--tag", default="native", help="run: a name for this CPU's results")
    p.add_argument(
        "--files", nargs="+", choices=["float", "int8"], default=["float", "int8"],
        help="run: which exports (under valgrind, int8 alone: its float kernels are far slower to emulate)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args.dir, args.model, args.faces, args.weight_bits)
    elif not (args.dir / "prepared.json").is_file():
        p.error(f"{args.dir}: run `prepare` first")
    elif args.step == "run":
        run(args.dir, args.tag, args.files)
    else:
        score(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
