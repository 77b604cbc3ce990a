"""Face detectors measured on annotated folders (iBUG .pts or the WFLW layout): recall,
boxes that match no annotated face, milliseconds per photo, each detector's box -> landmark
box calibration and the error left after it (the box noise training should cover):

    python -m smallnet_lit.tools.bench_detectors ../shared/data/300w-train [ROOT ...]
        [--detector mtcnn haar] [--every N] [--json out.json]

docs/prediction.md has the figures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from smallnet_lit.inference.detect import DETECTORS, MIN_FACE, FaceDetector, make_detector


def annotated_photos(root: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """Every photo of an annotated folder (WFLW layout or iBUG .pts) with its faces' points."""
    from smallnet_lit.data.ibug import IbugFaces
    from smallnet_lit.data.wflw import WFLWFaces

    wflw = (root / "WFLW_annotations").is_dir()
    records = WFLWFaces(root, split="test").records if wflw else IbugFaces(root).records
    photos: dict[Path, list[np.ndarray]] = {}
    for rec in records:
        photos.setdefault(Path(rec.image_path), []).append(rec.points)
    return sorted(photos.items())


def measure(detector: FaceDetector, root: str | Path, every: int = 1) -> dict[str, float]:
    """One detector on the annotated faces of a folder (every `every`-th photo): recall (a
    detection whose centre is within a third of the landmark extent of the face's landmark
    centre is that face's), detections matching no annotated face per photo (other faces in
    the picture, or false), milliseconds per photo, the box -> landmark box calibration, and
    the error of the calibrated boxes (centre, in landmark extents; scale, as a log ratio):
    the box noise training should cover."""
    from tqdm import tqdm

    from smallnet_lit.data.images import read_image

    photos = annotated_photos(Path(root))[::every]
    ms, ratios, shifts, centre_err, scale_err = [], [], [], [], []
    faces = unmatched = 0
    for path, point_sets in tqdm(photos, desc=f"{detector.name} on {Path(root).name}", unit="photo"):
        image = read_image(path)
        start = time.perf_counter()
        boxes = detector.detect(image).boxes.reshape(-1, 4).astype(np.float64)
        ms.append(1000 * (time.perf_counter() - start))
        calibrated, centres, used = detector.calibration(boxes), (boxes[:, :2] + boxes[:, 2:]) / 2, set()
        for points in point_sets:
            faces += 1
            lo, hi = points.min(0), points.max(0)
            centre, side = (lo + hi) / 2, float((hi - lo).max())
            distance = np.linalg.norm(centre - centres, axis=1)
            candidates = [j for j in np.argsort(distance) if distance[j] < side / 3 and j not in used]
            if not candidates:
                continue
            j = candidates[0]
            used.add(j)
            width = boxes[j, 2] - boxes[j, 0]
            ratios.append(side / width)
            shifts.append((centre - centres[j]) / width)
            centre_err.append(((calibrated[j, :2] + calibrated[j, 2:]) / 2 - centre) / side)
            scale_err.append(np.log((calibrated[j, 2] - calibrated[j, 0]) / side))
        unmatched += len(boxes) - len(used)
    found = len(ratios)
    result = {"photos": len(photos), "faces": faces, "found": found, "recall": found / max(faces, 1)}
    result["unmatched_per_photo"] = unmatched / max(len(photos), 1)
    result["ms_per_photo_median"] = float(np.median(ms)) if ms else float("nan")
    if found:
        shifts_, centre_err_ = np.array(shifts), np.array(centre_err)
        result |= {
            "extent_median": float(np.median(ratios)),
            "extent_p10": float(np.percentile(ratios, 10)),
            "extent_p90": float(np.percentile(ratios, 90)),
            "shift_x_median": float(np.median(shifts_[:, 0])),
            "shift_y_median": float(np.median(shifts_[:, 1])),
            "calibrated_centre_std_x": float(centre_err_[:, 0].std()),
            "calibrated_centre_std_y": float(centre_err_[:, 1].std()),
            "calibrated_log_scale_std": float(np.std(scale_err)),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m smallnet_lit.tools.bench_detectors",
        description="Measure face detectors on annotated folders (iBUG .pts or WFLW layout): "
        "recall, unmatched boxes, ms per photo, box calibration and calibrated box noise",
    )
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--detector", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--every", type=int, default=1, help="use every N-th photo")
    parser.add_argument("--min-face", type=int, default=MIN_FACE)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be at least 1, got {args.every}")
    for root in args.roots:
        if not root.is_dir():
            parser.error(f"{root}: not a folder")
    results = {}
    for name in args.detector:
        detector = make_detector(name, args.min_face)
        for root in args.roots:
            results[f"{name} {root}"] = measure(detector, root, args.every)
    print(
        "| detector | folder | faces | recall | unmatched boxes / photo | ms / photo | extent | shift x, y | calibrated centre std x, y | log scale std |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, r in results.items():
        name, root = key.split(" ", 1)
        cal = (
            f"{r['extent_median']:.3f} | {r['shift_x_median']:.3f}, {r['shift_y_median']:.3f} | "
            f"{r['calibrated_centre_std_x']:.3f}, {r['calibrated_centre_std_y']:.3f} | {r['calibrated_log_scale_std']:.3f}"
            if r["found"]
            else "| | |"
        )
        print(
            f"| {name} | {root} | {r['faces']} | {r['recall']:.1%} | {r['unmatched_per_photo']:.2f} | "
            f"{r['ms_per_photo_median']:.1f} | {cal} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
