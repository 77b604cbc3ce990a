"""Finding the Hydra config folder and turning configs into plain containers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from smallnet_lit.model.landmarks import WFLW_ATTRIBUTES


def config_dir() -> str:
    """`conf/` of a source checkout, or the copy packed into an installed wheel."""
    package = Path(__file__).resolve().parents[1]  # smallnet_lit/
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no Hydra config folder (conf/train.yaml) in {package} or in the source checkout")


def project_root() -> str:
    """The source checkout this package runs from (the folder with pyproject.toml above
    src/), else the working directory (an installed wheel)."""
    here = Path(__file__).resolve()
    for parent in here.parents[2:5]:
        if (parent / "pyproject.toml").is_file() and (parent / "conf" / "train.yaml").is_file():
            return str(parent)
    return str(Path.cwd())


def user_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "smallnet_lit")


# Config interpolations: ${smallnet_root:} and ${smallnet_cache:} (conf/paths/default.yaml).
OmegaConf.register_new_resolver("smallnet_root", project_root, replace=True)
OmegaConf.register_new_resolver("smallnet_cache", user_cache_dir, replace=True)
# ${smallnet_wflw_attributes:}: WFLW's six attribute flags, named once (model.landmarks).
OmegaConf.register_new_resolver("smallnet_wflw_attributes", lambda: list(WFLW_ATTRIBUTES), replace=True)
# ${smallnet_pid:} in run dirs: two runs started in the same second get folders of their own.
OmegaConf.register_new_resolver("smallnet_pid", lambda: str(os.getpid()), replace=True)


def plain(cfg: DictConfig | Any) -> Any:
    """Resolved plain dicts/lists: what checkpoints store, so they reload without Hydra."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def user_errors_exit_2(task):
    """For a Hydra task function: input the user can fix (a missing dataset, a bad root, a bad
    annotation or checkpoint) prints its one clear message and exits with 2, without a
    traceback; HYDRA_FULL_ERROR=1 still shows it."""
    import functools
    import logging
    import sys

    from smallnet_lit.data.errors import BadInputError

    @functools.wraps(task)
    def run(cfg):
        try:
            return task(cfg)
        except (BadInputError, FileNotFoundError, PermissionError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            logging.getLogger("smallnet_lit").error("%s", e)
            sys.exit(2)

    return run
