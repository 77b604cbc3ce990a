"""Reading checkpoints: the one place that turns a .ckpt file into a model, with an error
that names the file when it is missing, corrupt or not one of ours."""

from __future__ import annotations

import inspect
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smallnet_lit.errors import BadInputError

if TYPE_CHECKING:
    from smallnet_lit.model.landmarks import LandmarkScheme
    from smallnet_lit.model.net import SmallNet

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "smallnet_300w.ckpt"


def shipped_names() -> list[str]:
    """The shipped models' names: the checkpoints in weights/ (their README says what each is)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.ckpt"))


def resolve_model(model: str | Path) -> Path:
    """A path, or the name of a shipped model (`shipped_names()`)."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = WEIGHTS_DIR / f"{model}.ckpt"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_names())
    raise FileNotFoundError(f"model not found: {model} (not a file, nor a shipped model: {names})")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path` (our own files: Lightning checkpoints also hold
    optimizer and loop state, so they are not weights-only pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if _is_torchscript(path):
        raise BadInputError(
            f"{path}: a TorchScript export, for deployment (torch.jit.load); give the checkpoint (.ckpt) "
            "it was exported from, its ONNX export (.onnx) or a shipped model's name"
        )
    import torch

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


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold code/ and constants.pkl beside the data a checkpoint has."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# The crop protocol a model was trained and evaluated with: what prediction, evaluation and the
# benchmarks must reproduce. Stored in checkpoints (hyper_parameters["protocol"], written when
# training starts) and in the ONNX metadata; checkpoints from before it used these values.
# offset_x / offset_y: photo pixels added to every predicted point, the annotation files' own
# convention. A net trained with flips and no flip offset reads faces mirror-symmetrically and
# misses an x offset of its files (the shared 300-W-format files sit 1 px right): eval measures
# it (bias_x_px, label_offset.json) and smallnet-export --label-offset stores it.
PROTOCOL_DEFAULTS = {"crop_scale": 1.2, "pixel_mean": 127.5, "pixel_std": 64.0, "offset_x": 0.0, "offset_y": 0.0}


def model_protocol(hparams: dict[str, Any]) -> dict[str, float]:
    """crop_scale (the eval crop's side over the landmark extent), pixel_mean and pixel_std (the
    input normalization) of a checkpoint's hyper_parameters, or of an ONNX file's metadata."""
    stored = hparams.get("protocol") or {}
    return {k: float(stored.get(k, hparams.get(k, v))) for k, v in PROTOCOL_DEFAULTS.items()}


@dataclass
class LoadedNet:
    """A checkpoint's network for inference, read without Lightning or Hydra."""

    net: SmallNet  # eval mode
    scheme: LandmarkScheme
    hparams: dict[str, Any]  # the checkpoint's hyper_parameters (error_calibration, ...)

    @property
    def protocol(self) -> dict[str, float]:
        return model_protocol(self.hparams)


def load_net(ckpt_path: str | Path, device: str = "cpu") -> LoadedNet:
    """The SmallNet of a checkpoint (full or slim) or a shipped model's name, in eval mode,
    without importing Lightning or Hydra (prediction, the Python API and export start fast)."""
    from smallnet_lit.model.landmarks import get_scheme
    from smallnet_lit.model.net import SmallNet

    ckpt = read_checkpoint(resolve_model(ckpt_path))
    hparams = ckpt["hyper_parameters"]
    weights = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net = SmallNet(**hparams["net"])
        net.load_state_dict(weights)
        scheme = get_scheme(hparams.get("scheme", "wflw98"))
    except (TypeError, RuntimeError, ValueError, KeyError) as e:
        raise BadInputError(f"{ckpt_path}: checkpoint does not match this version of SmallNet ({e})") from None
    return LoadedNet(net.to(device).eval(), scheme, dict(hparams))


# The network settings that decide the shapes of the weights.
NETWORK_KEYS = (
    "num_points", "input_size", "widths", "depths", "width_mult", "block", "reparam",
    "norm", "delta_per_axis", "neighbours", "pool_levels", "head_stride",
)  # fmt: skip


# Settings that change what the network computes but not its weights' shapes: every conv reads
# any input size, and the head grid's pooling has no weights. A net can start from another's
# weights across them (init_from: the shipped models' convs read at a smaller input).
SHAPE_FREE_KEYS = ("input_size", "head_stride")


def network_difference(ours: dict[str, Any], theirs: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """What differs between two SmallNet configs, in one line ("num_points 68 vs 98; ..."),
    for weights that do not fit; '' when the shape-deciding settings agree (those in
    `ignore` left out)."""
    from smallnet_lit.model.net import SmallNet

    defaults = {k: v.default for k, v in inspect.signature(SmallNet).parameters.items()}
    diffs = []
    for key in (k for k in NETWORK_KEYS if k not in ignore):
        a, b = ours.get(key, defaults.get(key)), theirs.get(key, defaults.get(key))
        if (list(a) if isinstance(a, list | tuple) else a) != (list(b) if isinstance(b, list | tuple) else b):
            diffs.append(f"{key} {a} here vs {b} there")
    return "; ".join(diffs)
