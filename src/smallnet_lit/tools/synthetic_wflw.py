"""Write a WFLW-sized folder of rendered faces in WFLW's official layout, to rehearse the WFLW
recipe at full size where the real images cannot be had:

    python -m smallnet_lit.tools.synthetic_wflw OUT [--train 7500] [--test 2500] [--seed 0]
    python -m smallnet_lit.train +experiment=baseline data.root=OUT

OUT/WFLW_images/<n>--<Event>/<name>.jpg are full-size photos (640-1280 px wide) holding 1-4
faces each, drawn by the built-in renderer (smallnet_lit.data.synthetic) at 96-400 px;
OUT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
have one 207-field line per face (98 points, a box, 6 attribute flags, the image path), and
WFLW_annotations/list_98pt_test/ the six test subset lists. The attributes come from how each
face was drawn (`ATTRIBUTE_RULES`), so the attribute report of `eval` has subsets to show.
Seeded: photo i of a split is always the same. The faces are synthetic: figures measured on
them are about scale (reading, caching, memory, throughput), not about WFLW accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.synthetic import render_face
from smallnet_lit.data.wflw import ANNOTATION_DIR, IMAGE_DIR, SUBSET_DIR, SUBSET_FILES

log = logging.getLogger("smallnet_lit.synthetic_wflw")

EVENTS = ("Parade", "Handshaking", "Demonstration", "Riot", "Dancing", "Car_Accident", "Funeral", "Cheering",
          "Election_Campain", "Press_Conference", "People_Marching", "Meeting", "Group", "Interview", "Traffic",
          "Stock_Market", "Award_Ceremony", "Ceremony", "Concerts", "Couple")  # fmt: skip

# WFLW's six flags, in file order, from what the renderer drew (render_face's `drawn`); the
# thresholds give subsets of about WFLW's test shares (pose 13%, expression 13%, illumination
# 28%, make-up 8%, occlusion 29%, blur 31%): here about 18 / 15 / 30 / 10 / 35 / 33%.
ATTRIBUTE_RULES = {
    "pose": lambda d: abs(d["yaw"]) >= 35 or abs(d["roll"]) >= 33,
    "expression": lambda d: d["mouth_open"] >= 0.21,
    "illumination": lambda d: d["gain"] < 0.58 or d["gain"] > 1.24 or abs(d["offset"]) > 34,
    "makeup": lambda d: max(d["lips"]) - min(d["lips"]) > 125,
    "occlusion": lambda d: d["occluded"],
    "blur": lambda d: d["blur"] >= 5,
}


def render_photo(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[np.ndarray, list[int]]]]:
    """One full-size photo and its faces: (98 points in photo pixels, 6 attribute flags) each.
    Faces sit in separate cells of a grid, so they never overlap."""
    width = int(rng.integers(640, 1281))
    height = int(width * rng.uniform(0.6, 0.85))
    photo = np.empty((height, width, 3), np.uint8)
    photo[:] = rng.integers(30, 220, 3)
    photo = cv2.add(photo, rng.integers(0, 40, (height, width, 3), dtype=np.uint8))
    n_faces = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
    cols = 1 if n_faces == 1 else 2
    rows = -(-n_faces // cols)
    cell_w, cell_h = width // cols, height // rows
    faces = []
    for k in range(n_faces):
        r, c = divmod(k, cols)
        size = int(min(cell_w, cell_h, 400) * rng.uniform(0.45, 1.0))
        size = max(size, 96)
        drawn: dict = {}
        image, points = render_face(rng, size, drawn)
        x0 = c * cell_w + int(rng.integers(0, max(1, cell_w - size)))
        y0 = r * cell_h + int(rng.integers(0, max(1, cell_h - size)))
        size_y, size_x = min(size, height - y0), min(size, width - x0)
        photo[y0 : y0 + size_y, x0 : x0 + size_x] = image[:size_y, :size_x]
        flags = [int(bool(rule(drawn))) for rule in ATTRIBUTE_RULES.values()]
        faces.append((points + [x0, y0], flags))
    return photo, faces


def annotation_line(points: np.ndarray, flags: list[int], rel: str, rng: np.random.Generator) -> str:
    """207 fields as WFLW writes them; the box is the points' extent grown a little, as a
    detector's box would be."""
    lo, hi = points.min(0), points.max(0)
    grow = (hi - lo) * rng.uniform(0.02, 0.12, 2)
    box = np.concatenate([lo - grow, hi + grow]).round().astype(int)
    coords = " ".join(f"{v:.6f}" for v in points.ravel())
    return f"{coords} {' '.join(map(str, box))} {' '.join(map(str, flags))} {rel}"


def write_split(out: Path, split: str, n_faces: int, seed: int) -> tuple[list[str], dict[str, int]]:
    lines: list[str] = []
    photos = 0
    with tqdm(total=n_faces, desc=f"{split} faces", unit="face") as bar:
        while len(lines) < n_faces:
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, photos])
            photo, faces = render_photo(rng)
            faces = faces[: n_faces - len(lines)]
            event = photos % len(EVENTS)
            rel = f"{event}--{EVENTS[event]}/{event}_{EVENTS[event]}_{split}_{photos:05d}.jpg"
            path = out / IMAGE_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f"could not write {path}")
            lines += [annotation_line(points, flags, rel, rng) for points, flags in faces]
            photos += 1
            bar.update(len(faces))
    counts = {name: sum(int(line.split()[200 + j]) for line in lines) for j, name in enumerate(ATTRIBUTE_RULES)}
    return lines, {"photos": photos, "faces": len(lines), **counts}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(
        prog="python -m smallnet_lit.tools.synthetic_wflw", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("out", type=Path, help="folder to write (WFLW layout)")
    p.add_argument("--train", type=int, default=7500, help="training faces (WFLW: 7,500)")
    p.add_argument("--test", type=int, default=2500, help="test faces (WFLW: 2,500)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.train < 1 or args.test < 1:
        p.error(f"--train and --test must be at least 1, got {args.train} and {args.test}")
    if (args.out / ANNOTATION_DIR).exists():
        p.error(f"{args.out / ANNOTATION_DIR} exists: write into a new folder")
    start = time.perf_counter()
    summary = {}
    for split, n in (("train", args.train), ("test", args.test)):
        lines, summary[split] = write_split(args.out, split, n, args.seed)
        ann = args.out / ANNOTATION_DIR / f"list_98pt_rect_attr_{split}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("\n".join(lines) + "\n")
        if split == "test":  # the official per-attribute lists: the test lines with that flag
            (args.out / SUBSET_DIR).mkdir(parents=True, exist_ok=True)
            for j, suffix in enumerate(SUBSET_FILES):
                chosen = [line for line in lines if line.split()[200 + j] == "1"]
                (args.out / SUBSET_DIR / f"list_98pt_test_{suffix}.txt").write_text("".join(f"{c}\n" for c in chosen))
    size = sum(f.stat().st_size for f in (args.out / IMAGE_DIR).rglob("*.jpg"))
    summary.update(seconds=round(time.perf_counter() - start, 1), image_bytes=size)
    (args.out / "synthetic_wflw.json").write_text(json.dumps(summary, indent=1))
    for split in ("train", "test"):
        s = summary[split]
        log.info(
            "%s: %d faces on %d photos; attributes %s",
            split, s["faces"], s["photos"], ", ".join(f"{k} {s[k]}" for k in ATTRIBUTE_RULES),
        )  # fmt: skip
    log.info("wrote %s (%.2f GB of images) in %.0f s", args.out, size / 1e9, summary["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
