"""Reading checkpoints: the one place that turns a .ckpt file into a model, with an error
that names the file when it is missing, corrupt or not one of ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.model.module import LandmarkModule

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "smallnet_300w.ckpt"


def resolve_model(model: str | Path) -> Path:
    """A path, or the name of a shipped model (`smallnet_300w`, `smallnet_300w_fast`)."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = WEIGHTS_DIR / f"{model}.ckpt"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in WEIGHTS_DIR.glob("*.ckpt")))
    raise FileNotFoundError(f"model not found: {model} (not a file, nor a shipped model: {names})")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path` (our own files: Lightning checkpoints also hold
    optimizer and loop state, so they are not weights-only pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle, zip and EOF errors of a corrupt or cut-off file
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise BadInputError(
            f"{path}: not a readable checkpoint, the file is corrupt or incomplete "
            f"({type(e).__name__}: {first_line}); copy it again or choose another checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise BadInputError(f"{path}: not a smallnet_lit checkpoint (no state_dict and hyper_parameters)")
    return ckpt


def load_model(ckpt_path: str | Path, device: str = "cpu") -> LandmarkModule:
    """A LandmarkModule in eval mode from a checkpoint (full or slim) or a shipped model's name."""
    ckpt = read_checkpoint(resolve_model(ckpt_path))
    try:
        model = LandmarkModule(**ckpt["hyper_parameters"])
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError, ValueError) as e:
        raise BadInputError(f"{ckpt_path}: checkpoint does not match this version of SmallNet ({e})") from None
    return model.to(device).eval()
