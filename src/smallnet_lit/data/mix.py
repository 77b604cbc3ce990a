"""Several annotated face sets trained as one: e.g. 300-W + LFPW + YouTube Faces frames.

Each source keeps its own root, include/exclude globs, seeded split by photo (by identity
for video frames named <identity>_<frame>) and a sampling weight. Validation keeps the
sources apart, so NME is reported per source as well as overall.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smallnet_lit.data.cache import CacheConfig
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.faces import FaceSample, FaceSource
from smallnet_lit.data.ibug import PHOTO_SUFFIX, IbugFaces
from smallnet_lit.model.landmarks import LandmarkScheme

log = logging.getLogger(__name__)


@dataclass
class SourceSpec:
    """One iBUG-format face set. `weight` scales how often each of its faces is drawn in
    training, relative to a face of weight 1 (0.25: a quarter as often). `train_only`: every
    face trains and none validates (generated faces, e.g. profiled copies of training faces:
    tools.profile_faces)."""

    root: str
    include: list[str] = field(default_factory=lambda: ["**"])
    exclude: list[str] = field(default_factory=list)
    weight: float = 1.0
    val_fraction: float = 0.1
    split_seed: int = 0
    photo_suffix: str | None = PHOTO_SUFFIX
    train_only: bool = False
    # Degrees: photos with a face turned this much validate instead of training (IbugFaces).
    turned_to_val: float | None = None
    mean_face: str | None = None
    # Photo pixels the files place points right of the pixel grid's mirror axis: flips keep
    # them there (FaceSample.flip_offset). Measured as minus the x bias (eval's bias_x_px) of a
    # model trained with flips and offset 0. None: a generated folder takes the offset of the
    # mix source it was made from (scaled as its images were), any other folder 0.
    flip_offset: float | None = None


class SourceMix(FaceSource):
    """Named face sources read as one list: index i runs through the first source, then
    the second, and so on. `source_of(i)` says which source a face came from."""

    def __init__(self, sources: Mapping[str, FaceSource], weights: Mapping[str, float] | None = None) -> None:
        if not sources:
            raise ValueError("a source mix needs at least one source")
        self.names = tuple(sources)
        self.parts = [sources[n] for n in self.names]
        schemes = {p.scheme.name for p in self.parts}
        if len(schemes) > 1:
            raise ValueError(f"the mixed sources use different landmark schemes: {sorted(schemes)}")
        weights = dict(weights or {})
        self.weights = tuple(float(weights.get(n, 1.0)) for n in self.names)
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.split_groups = {
            n: p.split_groups for n, p in zip(self.names, self.parts, strict=True) if hasattr(p, "split_groups")
        }

    @property
    def scheme(self) -> LandmarkScheme:
        return self.parts[0].scheme

    def __len__(self) -> int:
        return int(self._starts[-1])

    def source_of(self, index: int) -> int:
        return int(np.searchsorted(self._starts, index, side="right") - 1)

    def load(self, index: int) -> FaceSample:
        which = self.source_of(index)
        sample = self.parts[which].load(index - int(self._starts[which]))
        sample.key = f"{self.names[which]}:{sample.key}"
        return sample

    def photo(self, index: int) -> np.ndarray | None:
        which = self.source_of(index)
        return self.parts[which].photo(index - int(self._starts[which]))

    def sample_weights(self) -> np.ndarray:
        """Per-face drawing weights (the source's weight for each of its faces)."""
        return np.repeat(np.asarray(self.weights), np.diff(self._starts))


def ibug_mix(
    sources: Mapping[str, SourceSpec | dict],
    split: str,
    on_bad_sample: str = "error",
    cache: CacheConfig | dict | None = None,
) -> SourceMix:
    """A SourceMix of iBUG-format folders, each split by its own seed and fraction.
    Sources with weight 0 are left out of training but still validated."""
    if not sources:
        raise ValueError("data.sources is empty: name at least one face folder")
    specs = {name: s if isinstance(s, SourceSpec) else SourceSpec(**s) for name, s in sources.items()}
    if split == "train":
        check_generated_splits(specs)
    offsets = flip_offsets(specs)
    built = {}
    for name, spec in specs.items():
        if spec.weight < 0:
            raise ValueError(f"data.sources.{name}.weight must be >= 0, got {spec.weight}")
        if (split == "train" and spec.weight == 0) or (split != "train" and spec.train_only):
            continue
        if not Path(spec.root).expanduser().is_dir():
            raise FileNotFoundError(f"data source {name!r}: {Path(spec.root).resolve()} is not a folder")
        try:
            built[name] = IbugFaces(
                spec.root,
                spec.include,
                spec.exclude,
                "all" if spec.train_only else split,
                spec.val_fraction,
                spec.split_seed,
                on_bad_sample,
                cache,
                spec.photo_suffix,
                name,
                spec.turned_to_val,
                spec.mean_face,
                offsets[name],
            )
        except (FileNotFoundError, BadInputError) as e:
            raise type(e)(f"data source {name!r}: {e}") from None
        if spec.flip_offset is None and offsets[name]:
            log.info("data source %r: flip offset %.3g px, that of the source it was made from", name, offsets[name])
    return SourceMix(built, {n: specs[n].weight for n in built})


def flip_offsets(specs: Mapping[str, SourceSpec]) -> dict[str, float]:
    """Each source's flip offset: its own, else that of the mix source its profiling.json names
    (times the record's mean image scale for shrunk copies, tools.degrade_faces), else 0."""
    real = {Path(s.root).expanduser().resolve(): s for s in specs.values() if s.flip_offset is not None}
    offsets = {}
    for name, spec in specs.items():
        offsets[name] = 0.0 if spec.flip_offset is None else float(spec.flip_offset)
        record = Path(spec.root).expanduser() / "profiling.json"
        if spec.flip_offset is not None or not record.is_file():
            continue
        try:
            made = json.loads(record.read_text())
            origin = real.get(Path(made["source"]).expanduser().resolve())
            scale = float(made.get("degraded", {}).get("scale_mean", 1.0))
        except (ValueError, KeyError, TypeError) as e:
            raise BadInputError.at(record, None, f"unreadable profiling record ({e})") from None
        if origin is not None:
            offsets[name] = float(origin.flip_offset) * scale
    return offsets


# The SourceSpec fields that decide a split; tools.profile_faces records them under the same names.
_SPLIT_SETTINGS = ("val_fraction", "split_seed", "turned_to_val", "photo_suffix")


def check_generated_splits(specs: Mapping[str, SourceSpec]) -> None:
    """A train-only source generated from another source's training faces (its profiling.json
    names that folder) must have been made with the same split: else faces that validate in
    the mix train as generated copies, and validation is silently optimistic."""
    real = {Path(s.root).expanduser().resolve(): (n, s) for n, s in specs.items() if not s.train_only}
    for name, spec in specs.items():
        record = Path(spec.root).expanduser() / "profiling.json"
        if not spec.train_only or spec.weight == 0 or not record.is_file():
            continue
        try:
            made = json.loads(record.read_text())
            origin = Path(made["source"]).expanduser().resolve()
            settings = made.get("settings", {})
        except (ValueError, KeyError, TypeError) as e:
            raise BadInputError.at(record, None, f"unreadable profiling record ({e})") from None
        if origin not in real:
            continue  # generated from a folder this mix does not validate on
        other, source = real[origin]
        made_with = {k: settings.get(k) for k in _SPLIT_SETTINGS}
        if "photo_suffix" not in settings:  # written before the option: the default
            made_with["photo_suffix"] = PHOTO_SUFFIX
        if str(made_with["photo_suffix"]).lower() in ("none", "null", ""):
            made_with["photo_suffix"] = None
        wanted = {k: getattr(source, k) for k in _SPLIT_SETTINGS}
        differ = [
            f"{k} {made_with[k]!r} there vs {wanted[k]!r} here"
            for k in _SPLIT_SETTINGS
            if made_with[k] != wanted[k]  # 30 == 30.0: numbers compare by value
        ]
        if settings.get("split", "train") != "train":
            differ.insert(0, f"it holds the {settings.get('split')!r} split's faces")
        if differ:
            raise BadInputError.at(
                record, None,
                f"data source {name!r} was generated from {other!r} ({origin}) with another split: "
                f"{'; '.join(differ)}. Faces that validate here would train as its copies. Regenerate it "
                f"with the same split (tools.profile_faces --val-fraction/--split-seed/--photo-suffix/"
                f"--turned-to-val) or drop it (data.sources.{name}.weight=0)",
            )  # fmt: skip
