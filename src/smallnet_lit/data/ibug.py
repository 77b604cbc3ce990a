"""iBUG 300-W format: each image beside a `.pts` file of 68 points (1-based pixels),
anywhere under a root:

    version: 1
    n_points: 68
    {
    x y
    ...
    }

The header lines are optional. A validation split is made from the faces by image
(all faces of one photo go to the same side), seeded and independent of listing order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from smallnet_lit.data.annotated import AnnotatedFaces
from smallnet_lit.data.cache import CacheConfig
from smallnet_lit.data.errors import BadInputError, ProblemLog
from smallnet_lit.data.images import IMAGE_SUFFIXES, image_beside
from smallnet_lit.data.sample import FaceRecord
from smallnet_lit.model.landmarks import IBUG68

log = logging.getLogger(__name__)


def read_pts(path: Path) -> np.ndarray:
    """(N, 2) 0-based points of a .pts file; BadInputError names file and line."""
    points, declared, in_block = [], None, False
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:  # permission denied, I/O error
        raise BadInputError.at(path, None, f"cannot read the file ({e.strerror or e})") from None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("version:"):
            continue
        if line.startswith("n_points:"):
            try:
                declared = int(line.split(":", 1)[1])
            except ValueError:
                raise BadInputError.at(path, lineno, f"bad n_points header {line!r}") from None
            continue
        if line == "{":
            in_block = True
            continue
        if line == "}":
            break
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadInputError.at(path, lineno, f"expected 'x y', got {line!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise BadInputError.at(path, lineno, f"coordinate is NaN or inf: {line!r}")
        points.append((x - 1.0, y - 1.0))  # 1-based -> 0-based pixel centres
    del in_block
    if declared is not None and declared != len(points):
        raise BadInputError.at(path, None, f"header says n_points: {declared} but {len(points)} points follow")
    return np.array(points, dtype=np.float64).reshape(-1, 2)


# 300-W names faces <photo>_<n>.pts (YouTube Faces frames: <identity>_<frame>.pts).
PHOTO_SUFFIX = r"_\d+$"


def photo_group(pts: Path, root: Path, photo_suffix: str | None = PHOTO_SUFFIX) -> str:
    """The photo a face belongs to: its path without the face-number suffix (regex;
    None when every file is its own photo, as LFPW's image_XXXX)."""
    rel = pts.relative_to(root).with_suffix("")
    return str(rel.parent / (re.sub(photo_suffix, "", rel.name) if photo_suffix else rel.name))


def in_validation(group: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class IbugFaces(AnnotatedFaces):
    """Faces under `root` matching `include` globs and none of `exclude` (globs on paths
    of .pts files relative to root, e.g. 'afw/**', 'helen/trainset/**').

    split: 'all', or 'train' / 'val' for the seeded by-photo split with `val_fraction`;
    `photo_suffix` is the part of a file name that numbers faces of one photo (all faces of
    a photo go to the same side). `turned_to_val`: degrees; every photo (identity, for video
    frames) with a face whose head yaw is at least this (the 3D fit of `mean_face`,
    data.profiling) goes to the validation side as well: a large-pose validation from the few
    real turned faces there are, at the cost of training on them (the count is logged).
    `flip_offset`: photo pixels the files place points right of the mirror axis (FaceSample)."""

    def __init__(
        self,
        root: str | Path,
        include: Sequence[str] = ("**",),
        exclude: Sequence[str] = (),
        split: str = "all",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        on_bad_sample: str = "error",
        cache: CacheConfig | dict | None = None,
        photo_suffix: str | None = PHOTO_SUFFIX,
        name: str | None = None,
        turned_to_val: float | None = None,
        mean_face: str | Path | None = None,
        flip_offset: float = 0.0,
    ) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"300-W data not found: {root.resolve()} is not a folder (set data.root=...)")
        if split not in ("all", "train", "val"):
            raise ValueError(f"300-W split must be 'all', 'train' or 'val', got {split!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if not os.access(root, os.R_OK | os.X_OK):
            raise PermissionError(f"{root}: the folder cannot be read (permission denied)")
        name = name or root.resolve().name  # logs and cache keys name the folder read
        problems = ProblemLog(f"{name} {split} ({root})", on_bad_sample)
        turned = (
            _turned_groups(root, photo_suffix, turned_to_val, mean_face) if turned_to_val and split != "all" else set()
        )
        records, matched = [], 0
        for pts in sorted(root.rglob("*.pts")):
            rel = pts.relative_to(root)
            if not any(rel.match(g) or _glob_match(rel, g) for g in include):
                continue
            if any(rel.match(g) or _glob_match(rel, g) for g in exclude):
                continue
            matched += 1
            group = photo_group(pts, root, photo_suffix)
            if split != "all" and (in_validation(group, val_fraction, split_seed) or group in turned) != (
                split == "val"
            ):
                continue
            image = image_beside(pts)
            if image is None:
                problems.add(pts, None, f"no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")
                continue
            try:
                points = read_pts(pts)
            except BadInputError as e:
                problems.add(e.path or pts, e.line, e.what)
                continue
            records.append(FaceRecord(image, points, str(image.relative_to(root)), str(pts)))
        if not records and not problems.problems and not matched:
            raise FileNotFoundError(f"no .pts files under {root} match include={list(include)} exclude={list(exclude)}")
        if not records and not problems.problems:
            raise FileNotFoundError(
                f"{matched} faces under {root} match, but none falls in the {split!r} split "
                f"(val_fraction={val_fraction}, split_seed={split_seed}; all faces of a photo go to one side, "
                f"photos named by photo_suffix={photo_suffix!r})"
            )
        self.split_groups = sorted({photo_group(Path(r.origin), root, photo_suffix) for r in records})
        super().__init__(records, IBUG68, f"{name}-{split}", on_bad_sample, cache, (), problems, flip_offset)


def _glob_match(rel: Path, pattern: str) -> bool:
    # Path.match has no '**' before Python 3.13: treat 'dir/**' as "anything below dir".
    if pattern.endswith("/**"):
        prefix = pattern[:-3]
        return rel.parts[: len(Path(prefix).parts)] == Path(prefix).parts
    return pattern == "**"


def _turned_groups(root: Path, photo_suffix: str | None, degrees: float, mean_face: str | Path | None) -> set[str]:
    """The photo groups under `root` with a face turned at least `degrees` (head yaw of the
    mean 3D face fitted to its points); faces whose points cannot be read or fitted are left
    to the reader's checks."""
    from smallnet_lit.data.profiling import head_yaw, load_mean_face

    if mean_face is None:
        raise ValueError(
            "turned_to_val needs mean_face: the mean 3D 68-point face (../shared/data/3d/mean_face_68.txt)"
        )
    face = load_mean_face(mean_face)
    groups, faces = set(), 0
    for pts in sorted(root.rglob("*.pts")):
        try:
            yaw = head_yaw(read_pts(pts), face)
        except BadInputError:
            continue
        if yaw >= degrees:
            groups.add(photo_group(pts, root, photo_suffix))
            faces += 1
    log.info(
        "%s: %d faces turned %g deg or more, in %d photos: those photos validate and do not train",
        root, faces, degrees, len(groups),
    )  # fmt: skip
    return groups
