"""Faces read from annotation files on disk, with a validation pass and a crop cache.

Readers (WFLW, 300-W) parse their annotations into FaceRecords; this base class checks
them (point count, finite values, images present and decodable, landmarks on the image),
applies `on_bad_sample`, and reads the faces through the crop cache (data.cache) so that an
epoch decodes small JPEG crops instead of full photos.
"""

from __future__ import annotations

import logging

import numpy as np

from smallnet_lit.data.cache import CacheConfig, open_cache
from smallnet_lit.data.errors import BadInputError, ProblemLog
from smallnet_lit.data.faces import FaceSample, FaceSource
from smallnet_lit.data.images import read_image
from smallnet_lit.data.sample import FaceRecord
from smallnet_lit.model.landmarks import LandmarkScheme

log = logging.getLogger(__name__)


class AnnotatedFaces(FaceSource):
    def __init__(
        self,
        records: list[FaceRecord],
        scheme: LandmarkScheme,
        name: str,
        on_bad_sample: str = "error",
        cache: CacheConfig | dict | None = None,
        attribute_names: tuple[str, ...] = (),
        problems: ProblemLog | None = None,
        flip_offset: float = 0.0,
    ) -> None:
        self._scheme = scheme
        self.flip_offset = float(flip_offset)
        self.name = name
        self.attribute_names = tuple(attribute_names)
        self.cache = cache if isinstance(cache, CacheConfig) else CacheConfig(**(cache or {}))
        problems = problems or ProblemLog(name, on_bad_sample)
        records = self._check_records(records, problems)
        if self.cache.dir:
            self.records, self._cache = self._load_or_build_cache(records, problems)
        else:
            self.records, self._cache = records, None
        problems.finish(kept=len(self.records))
        if not self.records:
            raise BadInputError(f"{name}: no usable faces")
        log.info("%s: %d faces%s", name, len(self.records), " (cached crops)" if self._cache else "")

    @property
    def scheme(self) -> LandmarkScheme:
        return self._scheme

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> FaceSample:
        rec = self.records[index]
        if self._cache is not None:
            sample = self._cache.load(index, rec)
        else:
            sample = FaceSample(read_image(rec.image_path), rec.points, rec.key, rec.box, rec.attributes)
        sample.flip_offset = self.flip_offset
        return sample

    def photo(self, index: int) -> np.ndarray | None:
        return read_image(self.records[index].image_path) if self._cache is not None else None

    # -- validation -------------------------------------------------------------------

    def _check_records(self, records: list[FaceRecord], problems: ProblemLog) -> list[FaceRecord]:
        good = []
        k = self.scheme.num_points
        for rec in records:
            if rec.points.shape != (k, 2):
                problems.add(rec.origin, None, f"{len(rec.points)} landmarks, the {self.scheme.name} scheme has {k}")
            elif not np.isfinite(rec.points).all():
                problems.add(rec.origin, None, "landmark coordinates include NaN or inf")
            elif not rec.image_path.is_file():
                problems.add(rec.image_path, None, f"image not found (annotated in {rec.origin})")
            else:
                good.append(rec)
        return good

    def _check_on_image(self, rec: FaceRecord, image_shape: tuple[int, ...]) -> str | None:
        h, w = image_shape[:2]
        outside = ((rec.points < -0.5) | (rec.points > [w - 0.5, h - 0.5])).any(1)
        # A few points off the edge happen (faces cut by the frame): the crop pads them.
        # A face mostly off its image is a wrong annotation or the wrong image.
        if outside.sum() > len(rec.points) // 2:
            return f"{int(outside.sum())} of {len(rec.points)} landmarks lie outside the {w}x{h} image"
        return None

    # -- cache ------------------------------------------------------------------------

    def _load_or_build_cache(self, records: list[FaceRecord], problems: ProblemLog):
        cache = open_cache(self.cache, self.name, records, self._check_on_image)
        kept = []
        for rec, entry in zip(records, cache.entries, strict=True):
            if entry.get("problem"):
                problems.add(rec.image_path, None, entry["problem"])
            else:
                kept.append((rec, entry))
        cache.entries = [e for _, e in kept]
        return [r for r, _ in kept], cache
