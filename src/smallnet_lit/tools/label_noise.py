"""How far a video set's labels move between near-identical frames: a floor under the NME any
model can show on them.

    python -m smallnet_lit.tools.label_noise EVAL_DIR LABELS_DIR [--source ytf68] [--still 0.02]

EVAL_DIR: an eval run folder (its predictions.jsonl); LABELS_DIR: the source's folder of .pts
files (e.g. ../shared/data/ytf68-train). Frames of one clip share a name but its last digit
(the shared YouTube Faces frames: `<identity>_<clip><frame>`, `--clip` changes the rule). For
consecutive frames of a clip, the labels of one are aligned onto the other's by a similarity
(head motion out) and the mean point distance left, in inter-ocular distances, is the labels'
change; the same for the model's points. Where the model's points barely move (< --still), the
image barely changed, so the labels' change there is their noise: two independent labellings of
one shape differ by sqrt(2) times each one's error, hence floor = median label change / sqrt(2)."""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np

from smallnet_lit.data.ibug import read_pts
from smallnet_lit.errors import BadInputError
from smallnet_lit.model.landmarks import IBUG68
from smallnet_lit.tools.paired import eval_rows

YAW_BINS = ((0.0, 30.0), (30.0, 90.0))


def aligned_change(a: np.ndarray, b: np.ndarray, eye_corners: tuple[int, int]) -> float:
    """Mean distance between b and a mapped onto b by the least-squares similarity, over b's
    inter-ocular distance."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    za, zb = ca[:, 0] + 1j * ca[:, 1], cb[:, 0] + 1j * cb[:, 1]
    moved = za * (np.vdot(za, zb) / np.vdot(za, za))  # rotation and scale as one complex factor
    residual = np.abs(moved - zb).mean()
    return float(residual / np.linalg.norm(b[eye_corners[0]] - b[eye_corners[1]]))


def _labels(path: Path) -> np.ndarray:
    points = read_pts(path)
    if len(points) != IBUG68.num_points:
        raise BadInputError.at(path, None, f"{len(points)} points, expected {IBUG68.num_points} (iBUG 68)")
    return points


def frame_pairs(rows: list[dict], labels: Path, source: str, clip: str) -> list[dict]:
    """Consecutive frames of each clip, with the labels' and the model's change between them."""
    clips = defaultdict(list)
    for row in rows:
        prefix, _, name = row["face"].partition(":")
        match = re.fullmatch(clip, Path(name).stem) if prefix == source else None
        if match:
            clips[match.group(1)].append((name, row))
    pairs = []
    for frames in clips.values():
        frames.sort(key=lambda f: f[0])
        for (name_a, a), (name_b, b) in pairwise(frames):
            truth = [_labels((labels / n).with_suffix(".pts")) for n in (name_a, name_b)]
            if "points" not in a or "points" not in b:
                raise ValueError(f"{source}:{name_a}: eval rows without points (an older eval: run it again)")
            predicted = [np.asarray(r["points"], dtype=np.float64) for r in (a, b)]
            pairs.append(
                {
                    "frames": (name_a, name_b),
                    "yaw": max(abs(r.get("yaw") or 0.0) for r in (a, b)),
                    "label_change": aligned_change(*truth, IBUG68.eye_corners),
                    "model_change": aligned_change(*predicted, IBUG68.eye_corners),
                    "nme": (float(a["nme"]) + float(b["nme"])) / 2,
                }
            )
    return pairs


def summarize(pairs: list[dict], still: float) -> list[dict]:
    out = []
    for low, high in YAW_BINS:
        rows = [p for p in pairs if low <= p["yaw"] < high]
        quiet = [p["label_change"] for p in rows if p["model_change"] < still]
        out.append(
            {
                "yaw": f"{low:.0f}-{high:.0f}",
                "pairs": len(rows),
                "label_change": float(np.median([p["label_change"] for p in rows])) if rows else float("nan"),
                "model_change": float(np.median([p["model_change"] for p in rows])) if rows else float("nan"),
                "model_nme": float(np.mean([p["nme"] for p in rows])) if rows else float("nan"),
                "still_pairs": len(quiet),
                "floor": float(np.median(quiet) / np.sqrt(2)) if quiet else float("nan"),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.label_noise", description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dir", type=Path)
    p.add_argument("labels", type=Path, help="the source's folder of .pts files")
    p.add_argument("--source", default="ytf68", help="the source's name in the eval (default ytf68)")
    p.add_argument("--clip", default=r"(.+)\d", help="regex on a frame's file stem; group 1 names its clip")
    p.add_argument(
        "--still", type=float, default=0.02, help="model change (inter-ocular units) below which a pair is still"
    )
    args = p.parse_args(argv)
    path = args.eval_dir / "predictions.jsonl"
    try:
        rows = eval_rows(args.eval_dir)
        pairs = frame_pairs(rows, args.labels, args.source, args.clip)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: {path}: no two frames of one clip from source {args.source!r}", file=sys.stderr)
        return 2
    print(f"{args.source}: {len(pairs)} pairs of consecutive frames ({path})")
    print("yaw    pairs  label change  model change  model NME  still pairs  label noise floor (NME)")
    for s in summarize(pairs, args.still):
        print(
            f"{s['yaw']:<6} {s['pairs']:>5}  {100 * s['label_change']:>11.2f}%  {100 * s['model_change']:>11.2f}%"
            f"  {100 * s['model_nme']:>8.2f}%  {s['still_pairs']:>11}  {100 * s['floor']:>8.2f}%"
        )
    print(f"(medians; still: the model's points moved < {100 * args.still:g}% of the inter-ocular distance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
