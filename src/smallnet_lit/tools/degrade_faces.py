"""Write video-frame-like copies of generated training faces (e.g. tools.profile_faces output):
each image shrunk so its face is as small as a YouTube Faces frame's, maybe blurred, and saved
as a low-quality JPEG, with its points moved exactly, as an iBUG-format folder (image + .pts)
that `data=faces68` can take as a train-only source.

    python -m smallnet_lit.tools.degrade_faces SRC OUT [--face-px 60 180] [--blur 0.5]
        [--jpeg 30 80] [--seed 0] [--contact-sheet 48]

SRC must be a generated folder (it holds profiling.json): a real folder also holds validation
faces, which must not train as copies. OUT/profiling.json keeps SRC's record (its source and
split, so the mix's split check still applies) with a `degraded` section added (with the mean
image scale, by which the source's flip offset shrinks).
Method: smallnet_lit.data.degrade."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.degrade import VideoLike, degrade, face_size
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.images import read_image
from smallnet_lit.tools.profile_faces import write_pts

log = logging.getLogger("smallnet_lit.degrade_faces")
RECORD = "profiling.json"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.degrade_faces", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="generated iBUG-format folder (holds profiling.json)")
    p.add_argument("out", type=Path, help="output folder (iBUG format)")
    p.add_argument("--face-px", type=float, nargs=2, default=VideoLike.face_px, metavar=("LOW", "HIGH"),
                   help="face size (bounding-box diagonal, px) after shrinking, drawn log-uniformly")  # fmt: skip
    p.add_argument("--blur", type=float, default=VideoLike.blur, help="chance of a Gaussian blur")
    p.add_argument(
        "--jpeg", type=int, nargs=2, default=VideoLike.jpeg, metavar=("LOW", "HIGH"), help="JPEG quality range"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--contact-sheet", type=int, default=48, metavar="N", help="faces on OUT/contact_sheet.jpg (0: none)"
    )
    args = p.parse_args(argv)
    try:
        how = VideoLike(tuple(args.face_px), args.blur, VideoLike.blur_sigma, tuple(args.jpeg))
    except ValueError as e:
        p.error(str(e))
    if args.out.resolve() == args.source.resolve() or args.source.resolve() in args.out.resolve().parents:
        p.error("OUT must not lie inside SOURCE (the copies would be read as sources next time)")
    record_path = args.source / RECORD
    if not record_path.is_file():
        log.error(
            "%s: no %s: degrade only generated training copies (tools.profile_faces output); a real folder "
            "also holds validation faces", args.source, RECORD,
        )  # fmt: skip
        return 2
    try:
        record = json.loads(record_path.read_text())
        faces = IbugFaces(args.source, on_bad_sample="skip", cache=None)
    except ValueError as e:  # JSONDecodeError included
        log.error("%s: %s", record_path if isinstance(e, json.JSONDecodeError) else args.source, e)
        return 2
    except FileNotFoundError as e:
        log.error("%s", e)
        return 2
    from smallnet_lit.inference.plots import contact_sheet, draw_landmarks
    from smallnet_lit.model.landmarks import IBUG68

    args.out.mkdir(parents=True, exist_ok=True)
    tiles, skipped, sizes, qualities, scales = [], {}, [], [], []
    for index, rec in enumerate(tqdm(faces.records, desc="degrading", unit="face")):
        rng = np.random.default_rng([args.seed, index])
        try:
            image = read_image(rec.image_path)
        except BadInputError as e:  # counted and listed, never silently dropped
            skipped[rec.key] = str(e)
            continue
        frame = degrade(image, rec.points, rng, how)
        target = (args.out / rec.key).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, frame.quality]):
            log.error("could not write %s", target)
            return 1
        write_pts(target.with_suffix(".pts"), frame.points)
        sizes.append(face_size(frame.points))
        qualities.append(frame.quality)
        scales.append(frame.scale)
        if len(tiles) < args.contact_sheet:
            written = read_image(target)  # as training will see it: compressed
            tiles.append((draw_landmarks(written, frame.points, scheme=IBUG68), f"{target.stem} q{frame.quality}"))
    record["degraded"] = {
        "from": str(args.source.resolve()),
        "settings": {k: v for k, v in vars(args).items() if k not in ("source", "out")},
        "blur_sigma": list(how.blur_sigma),
        "faces": len(faces.records),
        "written": len(sizes),
        "skipped": skipped,
        "face_px_percentiles_10_50_90": np.percentile(sizes, [10, 50, 90]).round(1).tolist() if sizes else [],
        "jpeg_quality_mean": round(float(np.mean(qualities)), 1) if qualities else None,
        # A flip offset of the source files shrinks with the images (data.mix.flip_offsets).
        "scale_mean": round(float(np.mean(scales)), 4) if scales else 1.0,
    }
    (args.out / RECORD).write_text(json.dumps(record, indent=1))
    if tiles:
        sheet = contact_sheet(tiles, columns=6, size=240)
        cv2.imwrite(str(args.out / "contact_sheet.jpg"), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    log.info(
        "wrote %d video-like copies of %d faces in %s (face size 10/50/90th percentile %s px); skipped %d%s",
        len(sizes), len(faces.records), args.out, record["degraded"]["face_px_percentiles_10_50_90"], len(skipped),
        "".join(f"\n  {k}: {v}" for k, v in skipped.items()),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
