"""The package's one error type for input it cannot use (bad files, lines, arguments):
below every layer, so the model, data, training and inference code all raise it."""

from __future__ import annotations

from pathlib import Path


class BadInputError(ValueError):
    """Raised for input the package cannot use; the message names file and line. Made with
    `BadInputError.at(path, line, what)`, it also carries them as fields, so collectors
    (ProblemLog) use them without parsing the message."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None, what: str = "") -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.line = line
        self.what = what or message

    @classmethod
    def at(cls, path: Path | str, line: int | None, what: str) -> BadInputError:
        where = f"{path}:{line}" if line is not None else str(path)
        return cls(f"{where}: {what}", path, line, what)
