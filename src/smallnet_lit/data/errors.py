"""Bad input: one error type that says which file, which line and what is wrong, and a
collector that either stops on the problems or skips them with a count."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from smallnet_lit.errors import BadInputError  # noqa: F401 - the readers raise it from here too

log = logging.getLogger(__name__)

ON_BAD_SAMPLE = ("error", "skip")


@dataclass
class Problem:
    path: Path
    line: int | None
    what: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.what}"


@dataclass
class ProblemLog:
    """Collects every problem of a pass (so a user sees all missing images at once, not
    the first), then stops (`on_bad_sample=error`) or logs them and goes on (`skip`)."""

    source: str
    on_bad_sample: str = "error"
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f"on_bad_sample must be one of {ON_BAD_SAMPLE}, got {self.on_bad_sample!r}")

    def add(self, path: Path | str, line: int | None, what: str) -> None:
        self.problems.append(Problem(Path(path), line, what))

    def finish(self, kept: int) -> None:
        if not self.problems:
            return
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        summary = f"{self.source}: {len(self.problems)} bad sample(s), {kept} good"
        if kept == 0:  # skipping would leave nothing to train or evaluate on: say so now
            raise BadInputError(f"{summary}: no usable faces left:\n  {shown}{more}")
        if self.on_bad_sample == "error":
            raise BadInputError(
                f"{summary}:\n  {shown}{more}\n(set data.on_bad_sample=skip to leave them out and use the rest)"
            )
        log.warning("%s; skipped:\n  %s%s", summary, shown, more)
