"""WFLW in its official layout:

    ROOT/WFLW_images/<event>/<name>.jpg
    ROOT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    ROOT/WFLW_annotations/list_98pt_test/list_98pt_test_<subset>.txt   (optional)

Each annotation line has 207 fields: 98 (x, y) pairs, the box x_min y_min x_max y_max,
six 0/1 attribute flags (pose, expression, illumination, make-up, occlusion, blur) and the
image path relative to WFLW_images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smallnet_lit.data.annotated import AnnotatedFaces
from smallnet_lit.data.cache import CacheConfig
from smallnet_lit.data.errors import BadInputError, ProblemLog
from smallnet_lit.data.sample import FaceRecord
from smallnet_lit.model.landmarks import WFLW98, WFLW_ATTRIBUTES

ANNOTATION_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
SUBSET_DIR = "WFLW_annotations/list_98pt_test"
IMAGE_DIR = "WFLW_images"
# Official subset file suffixes, in attribute order.
SUBSET_FILES = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
N_COORDS = 2 * WFLW98.num_points
N_FIELDS = N_COORDS + 4 + 6 + 1


def annotation_path(root: Path, split: str) -> Path:
    return root / ANNOTATION_DIR / f"list_98pt_rect_attr_{split}.txt"


def missing_wflw_message(root: Path, split: str) -> str:
    return (
        f"WFLW not found: expected {annotation_path(root, split)} and images under {root / IMAGE_DIR}. "
        "Unpack the official WFLW_images.tar.gz and WFLW_annotations.tar.gz into that folder "
        "(or point data.root at where they are, e.g. data.root=/data/WFLW)."
    )


def parse_line(line: str, path: Path, lineno: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """points (98, 2), box (4,), attributes (6,), image path; BadInputError names the line."""
    fields = line.split()
    if len(fields) != N_FIELDS:
        raise BadInputError.at(
            path,
            lineno,
            f"expected {N_FIELDS} fields ({N_COORDS} coordinates, 4 box values, "
            f"6 attribute flags, image path), got {len(fields)}",
        )
    try:
        values = np.array([float(v) for v in fields[:-1]])
    except ValueError:
        bad = next(i for i, v in enumerate(fields[:-1]) if not _is_number(v))
        raise BadInputError.at(path, lineno, f"field {bad + 1} {fields[bad]!r} is not a number") from None
    if not np.isfinite(values).all():
        raise BadInputError.at(path, lineno, "coordinates or box include NaN or inf")
    attributes = values[N_COORDS + 4 :]
    if not np.isin(attributes, (0, 1)).all():
        raise BadInputError.at(path, lineno, f"attribute flags must be 0 or 1, got {attributes.tolist()}")
    return values[:N_COORDS].reshape(-1, 2), values[N_COORDS : N_COORDS + 4], attributes.astype(np.float32), fields[-1]


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class WFLWFaces(AnnotatedFaces):
    """The `split` ('train' or 'test') of WFLW under `root`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        on_bad_sample: str = "error",
        cache: CacheConfig | dict | None = None,
        limit: int | None = None,
    ) -> None:
        root = Path(root).expanduser()
        if split not in ("train", "test"):
            raise ValueError(f"WFLW split must be 'train' or 'test', got {split!r}")
        ann = annotation_path(root, split)
        if not ann.is_file():
            raise FileNotFoundError(missing_wflw_message(root, split))
        problems = ProblemLog(f"WFLW {split} ({ann})", on_bad_sample)
        records = []
        with open(ann) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    points, box, attributes, rel = parse_line(line, ann, lineno)
                except BadInputError as e:
                    problems.add(ann, lineno, e.what)
                    continue
                records.append(
                    FaceRecord(root / IMAGE_DIR / rel, points, f"{rel}#{lineno}", f"{ann}:{lineno}", box, attributes)
                )
                if limit and len(records) >= limit:
                    break
        if split == "test":
            self._apply_subset_files(root, records)
        super().__init__(records, WFLW98, f"wflw-{split}", on_bad_sample, cache, WFLW_ATTRIBUTES, problems)

    @staticmethod
    def _apply_subset_files(root: Path, records: list[FaceRecord]) -> None:
        """Where the official subset lists exist, they define the subsets (matched by
        image and landmarks); otherwise the attribute flags of each line do."""
        index = {(r.key.split("#")[0], tuple(np.round(r.points[0], 3))): r for r in records}
        for j, suffix in enumerate(SUBSET_FILES):
            path = root / SUBSET_DIR / f"list_98pt_test_{suffix}.txt"
            if not path.is_file():
                continue
            members = set()
            with open(path) as f:
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        fields = line.split()
                        try:
                            members.add((fields[-1], (round(float(fields[0]), 3), round(float(fields[1]), 3))))
                        except (ValueError, IndexError):
                            raise BadInputError.at(path, lineno, "not a WFLW annotation line") from None
            for key, rec in index.items():
                rec.attributes = rec.attributes.copy()
                rec.attributes[j] = float(key in members)
