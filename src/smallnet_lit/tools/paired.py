"""Two models on the same faces, face by face: the mean NME difference with a paired
bootstrap 95% interval, and on how many faces the first is better.

    python -m smallnet_lit.tools.paired EVAL_A EVAL_B [--min-yaw 30] [--source ytf68] [--part left_eye]

EVAL_A, EVAL_B: eval run folders (their predictions.jsonl) of the same split. Negative: A is
better. `--min-yaw`: only faces turned at least that much (eval's fitted yaw). `--part`: the NME
of one face part's points (the scheme's parts: contour, left_eye, outer_lips, ...) instead of all."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def eval_rows(run: Path) -> list[dict]:
    """The rows of an eval run folder's predictions.jsonl (one face each: face, nme, yaw, points...)."""
    path = run / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no eval predictions (run smallnet_lit.eval with hydra.run.dir={run})")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
            rows.append({**row, "face": str(row["face"]), "nme": float(row["nme"])})
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{lineno}: not an eval prediction row ({e})") from None
    return rows


def per_face(run: Path, part: str | None = None) -> dict[str, tuple[float, float | None]]:
    """Each face's NME (or, with `part`, its part's NME) and yaw."""
    rows = eval_rows(run)
    if part is None:
        return {row["face"]: (row["nme"], row.get("yaw")) for row in rows}
    names = rows[0].get("part_nme", {}) if rows else {}
    if part not in names:
        known = ", ".join(names) or "none: evaluated before eval wrote part_nme, evaluate it again"
        raise ValueError(f"{run / 'predictions.jsonl'}: no part {part!r} (its parts: {known})")
    faces = {}
    for lineno, row in enumerate(rows, start=1):
        try:
            faces[row["face"]] = (float(row["part_nme"][part]), row.get("yaw"))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{run / 'predictions.jsonl'}:{lineno}: no NME of part {part!r} in this row") from None
    return faces


def paired(a: dict, b: dict, min_yaw: float | None = None, source: str | None = None, seed: int = 0) -> dict:
    if set(a) != set(b):
        raise ValueError(
            f"the two runs scored different faces ({len(set(a) ^ set(b))} differ): evaluate the same split"
        )
    keys = [
        k
        for k in sorted(a)
        if (min_yaw is None or (a[k][1] is not None and abs(a[k][1]) >= min_yaw))
        and (source is None or k.split(":")[0] == source)
    ]
    if not keys:
        raise ValueError("no face is left after --min-yaw/--source")
    d = np.array([a[k][0] - b[k][0] for k in keys])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (5000, len(d)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "faces": len(d),
        "mean_diff": float(d.mean()),
        "ci95": [float(low), float(high)],
        "a_better": int((d < 0).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.paired", description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--min-yaw", type=float, help="only faces turned this many degrees or more")
    p.add_argument("--source", help="only faces of this source (faces68: ibug300w, lfpw, ytf68)")
    p.add_argument("--part", help="the NME of this face part's points (eval's part_nme: left_eye, contour, ...)")
    args = p.parse_args(argv)
    try:
        r = paired(per_face(args.a, args.part), per_face(args.b, args.part), args.min_yaw, args.source)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    low, high = r["ci95"]
    print(
        f"{r['faces']} faces: NME{f' ({args.part})' if args.part else ''} {args.a.name} - {args.b.name} = {100 * r['mean_diff']:+.3f}% "
        f"(paired bootstrap 95%: {100 * low:+.3f}% to {100 * high:+.3f}%); {args.a.name} better on "
        f"{r['a_better']} of {r['faces']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
