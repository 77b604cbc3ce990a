"""Write face-profiled copies of an iBUG-format folder's training faces: each face re-rendered
with the head turned further (yaw up to --max-yaw, pitch within --pitch), with its moved
labels, as an iBUG-format folder (image + .pts) that `data=faces68` can take as a source.

    python -m smallnet_lit.tools.profile_faces SRC OUT [--copies 2] [--max-yaw 75] [--pitch 15]
        [--split train] [--seed 0] [--mean-face ../shared/data/3d/mean_face_68.txt] [--contact-sheet 48]

Only the faces of `--split` (the seeded by-photo split that training uses: `train` by
default) are profiled, so no validation face leaks into training. Faces whose 3D fit fails are
skipped and counted. Writes OUT/profiling.json (settings, counts, skipped faces) and, with
--contact-sheet N, OUT/contact_sheet.jpg: the first N profiled faces with their points.
Method: smallnet_lit.data.profiling."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.ibug import PHOTO_SUFFIX, IbugFaces
from smallnet_lit.data.images import read_image
from smallnet_lit.data.profiling import (
    MEAN_FACE_FILE,
    FaceLeavesPhoto,
    ProfilingError,
    fit_pose,
    load_mean_face,
    profile_face,
    sample_poses,
)

log = logging.getLogger("smallnet_lit.profile_faces")


def default_mean_face() -> Path:
    from smallnet_lit.training.config import project_root

    return Path(project_root()).parent / "shared" / "data" / MEAN_FACE_FILE


def write_pts(path: Path, points: np.ndarray) -> None:
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)  # .pts is 1-based
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.profile_faces", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="iBUG-format folder (image + .pts, 68 points)")
    p.add_argument("out", type=Path, help="output folder (iBUG format)")
    p.add_argument("--copies", type=int, default=2, help="profiled copies per face")
    p.add_argument("--max-yaw", type=float, default=75.0, help="largest head yaw after turning, degrees")
    p.add_argument("--pitch", type=float, default=15.0, help="pitch turns drawn from [-pitch, pitch] degrees")
    p.add_argument("--split", choices=["train", "val", "all"], default="train")
    p.add_argument("--val-fraction", type=float, default=0.1, help="as data.sources.*.val_fraction")
    p.add_argument("--split-seed", type=int, default=0, help="as data.sources.*.split_seed")
    p.add_argument(
        "--photo-suffix", default=PHOTO_SUFFIX,
        help="as data.sources.*.photo_suffix: what numbers the faces of one photo; 'none' when each file "
        "is its own photo (LFPW's image_XXXX: --photo-suffix none, as data=faces68 splits it)",
    )  # fmt: skip
    p.add_argument(
        "--turned-to-val", type=float, metavar="DEG",
        help="as data.turned_to_val: photos with a face turned this much are validation, not profiled",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mean-face", type=Path, help="mean 3D 68-point face (default: ../shared/data/3d)")
    p.add_argument(
        "--contact-sheet", type=int, default=48, metavar="N", help="faces on OUT/contact_sheet.jpg (0: none)"
    )
    p.add_argument("--limit", type=int, help="profile only the first N faces (a quick look)")
    args = p.parse_args(argv)
    if args.copies < 1:
        p.error(f"--copies must be at least 1, got {args.copies}")
    if not 0 < args.max_yaw <= 90:
        p.error(f"--max-yaw must be in (0, 90], got {args.max_yaw}")
    if not 0 <= args.pitch <= 45:
        p.error(f"--pitch must be in [0, 45], got {args.pitch}")
    if args.out.resolve() == args.source.resolve() or args.source.resolve() in args.out.resolve().parents:
        p.error("OUT must not lie inside SOURCE (the profiled faces would be read as sources next time)")
    try:
        mean_face = load_mean_face(args.mean_face or default_mean_face())
        faces = IbugFaces(
            args.source, split=args.split, val_fraction=args.val_fraction, split_seed=args.split_seed,
            on_bad_sample="skip", cache=None, turned_to_val=args.turned_to_val,
            photo_suffix=None if str(args.photo_suffix).lower() in ("none", "null", "") else args.photo_suffix,
            mean_face=args.mean_face or default_mean_face(),
        )  # fmt: skip
    except (FileNotFoundError, ValueError, PermissionError) as e:
        log.error("%s", e)
        return 2
    records = faces.records[: args.limit] if args.limit else faces.records
    args.out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    reasons: Counter[str] = Counter()
    skipped_copies: dict[str, str] = {}
    copy_reasons: Counter[str] = Counter()
    tiles: list[tuple[np.ndarray, str]] = []
    written, yaws = 0, []
    from smallnet_lit.inference.plots import contact_sheet, draw_landmarks
    from smallnet_lit.model.landmarks import IBUG68

    for index, rec in enumerate(tqdm(records, desc="profiling", unit="face")):
        rng = np.random.default_rng([args.seed, index])
        try:
            image = read_image(rec.image_path)
            current = fit_pose(rec.points, mean_face).yaw_pitch_roll[0]
            outputs = []
            for k in range(args.copies):
                yaw_delta, pitch_delta = sample_poses(rng, current, args.max_yaw, args.pitch)
                try:
                    outputs.append((k, profile_face(image, rec.points, mean_face, yaw_delta, pitch_delta)))
                except FaceLeavesPhoto as e:  # this turn only: the face's other copies stand
                    skipped_copies[f"{rec.key} copy {k}"] = str(e)
                    copy_reasons[str(e).split(":")[0]] += 1
        except ProfilingError as e:
            skipped[rec.key] = str(e)
            reasons[str(e).split(":")[0]] += 1
            continue
        rel = Path(rec.key)
        for k, face in outputs:
            target = args.out / rel.parent / f"{rel.stem}_p{k}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), face.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]):
                log.error("could not write %s", target)
                return 1
            write_pts(target.with_suffix(".pts"), face.points)
            written += 1
            yaws.append(face.yaw)
            if len(tiles) < args.contact_sheet:
                overlay = draw_landmarks(face.image, face.points, scheme=IBUG68)
                tiles.append((overlay, f"{rel.stem} yaw {face.yaw:+.0f} pitch {face.pitch:+.0f}"))
    summary = {
        "source": str(args.source.resolve()),
        "split": args.split,
        "settings": {k: v for k, v in vars(args).items() if k not in ("source", "out", "mean_face")},
        "mean_face": str(args.mean_face or default_mean_face()),
        "faces": len(records),
        "profiled_images": written,
        "skipped": len(skipped),
        "skipped_by_reason": dict(reasons),
        "skipped_faces": skipped,
        "skipped_copies": len(skipped_copies),
        "skipped_copies_by_reason": dict(copy_reasons),
        "skipped_copy_list": skipped_copies,
        "yaw_histogram_deg": np.histogram(np.abs(yaws), bins=[0, 15, 30, 45, 60, 75, 90])[0].tolist(),
    }
    (args.out / "profiling.json").write_text(json.dumps(summary, indent=1))
    if tiles:
        sheet = contact_sheet(tiles, columns=6, size=240)
        cv2.imwrite(str(args.out / "contact_sheet.jpg"), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    log.info(
        "profiled %d of %d faces into %d images in %s; skipped %d faces (%s) and %d single copies (%s)",
        len(records) - len(skipped), len(records), written, args.out, len(skipped),
        ", ".join(f"{k}: {v}" for k, v in reasons.items()) or "none", len(skipped_copies),
        ", ".join(f"{k}: {v}" for k, v in copy_reasons.items()) or "none",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
