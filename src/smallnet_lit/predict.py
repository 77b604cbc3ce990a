"""Landmarks on your photos and videos.

    python -m smallnet_lit.predict PATH [PATH ...] [--model CKPT_OR_ONNX] [--out DIR]
                                   [--boxes boxes.json|csv] [--smooth one_euro|sigma|none]

PATH is an image, a folder of images, or a video. Faces are found with the MTCNN detector
(--detector haar: OpenCV's Haar cascade), or taken from --boxes. Writes DIR/predictions.jsonl (one line per image or
video frame: faces with box, points, per-point sigma and confidence, all in image pixels),
overlay images in DIR/overlays/ and, for a video, DIR/<name>_landmarks.mp4.
Inputs that cannot be read are reported and skipped; the exit code is 0 when every input
was read (an image with no face is a result: zero faces), 1 when some could not be read,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.inference.detect import DEFAULT_DETECTOR, DETECTORS, MIN_FACE
from smallnet_lit.inference.smoothing import SMOOTHERS
from smallnet_lit.inference.writer import PredictionWriter
from smallnet_lit.model.checkpoints import shipped_names

log = logging.getLogger("smallnet_lit.predict")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="smallnet-predict", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders of images, or videos")
    p.add_argument(
        "--model",
        default="smallnet_300w",
        help=f"checkpoint (.ckpt), ONNX file (.onnx) or shipped model name ({', '.join(shipped_names())})",
    )
    p.add_argument(
        "--backend",
        choices=["onnx", "torch"],
        help="ONNX Runtime or PyTorch (default: ONNX Runtime int8 for shipped models, else what the file is)",
    )
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    p.add_argument("--boxes", type=Path, help="JSON or CSV of landmark boxes per image name (skips detection)")
    p.add_argument("--smooth", choices=sorted(SMOOTHERS), default="one_euro", help="video smoothing")
    p.add_argument(
        "--detector", choices=list(DETECTORS), default=DEFAULT_DETECTOR, help="face detector (docs/prediction.md)"
    )
    p.add_argument("--min-face", type=int, default=MIN_FACE, help="smallest face the detector looks for, pixels")
    p.add_argument("--redetect-every", type=int, default=10, help="video: run the detector every N frames")
    p.add_argument(
        "--max-predicted-nme",
        type=float,
        metavar="X",
        help="leave out faces whose predicted NME is above X (e.g. 0.08); they are listed under uncertain_faces",
    )
    p.add_argument("--no-overlays", action="store_true", help="write JSON only")
    p.add_argument("--sigma", action="store_true", help="overlays: a circle of each point's predicted sigma")
    p.add_argument(
        "--contact-sheet",
        action="store_true",
        help="also write the overlays as contact_sheet_<n>.jpg, 48 images each (name and face count under each)",
    )
    args = p.parse_args(argv)
    # Checked before any output is touched: a bad value must not cost an earlier result.
    if args.redetect_every < 1:
        p.error(f"--redetect-every must be at least 1, got {args.redetect_every}")
    if args.contact_sheet and args.no_overlays:
        p.error("--contact-sheet is made of the overlays: drop --no-overlays")
    if args.max_predicted_nme is not None and not 0 < args.max_predicted_nme < 1:
        p.error(
            f"--max-predicted-nme is an NME (a fraction of the eye distance, e.g. 0.08), got {args.max_predicted_nme}"
        )
    if args.min_face < 1:
        p.error(f"--min-face must be at least 1 pixel, got {args.min_face}")
    missing = [str(path) for path in args.inputs if not path.exists()]
    if missing:  # a typo must not cost the results of an earlier run in --out
        p.error(f"input not found: {', '.join(missing)}")
    if problem := output_folder_problem(args.out):
        p.error(f"--out {args.out}: {problem}")
    return args


def output_folder_problem(out: Path) -> str | None:
    """Why `out` cannot take the outputs (a file, a path under a file, not writable), or
    None; creates the folder. Checked before the model is loaded."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except FileExistsError:
        return "is a file, not a folder"
    except NotADirectoryError:
        return "lies under a file, not a folder"
    except OSError as e:
        return f"cannot write there ({e.strerror or e})"
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        writer = PredictionWriter(args)
    except (FileNotFoundError, BadInputError, ValueError) as e:
        log.error("%s", e)
        return 2
    failures = writer.run(args.inputs)
    log.info("wrote %s", args.out / "predictions.jsonl")
    if failures:
        log.warning("%d input(s) could not be read:\n  %s", len(failures), "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
