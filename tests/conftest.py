"""Shared fixtures: composed Hydra configs with tiny overrides, generated datasets in both
on-disk formats (tests/helpers/faces.py), a tiny trained checkpoint; and the one skip rule
of the tests that read ../shared/data."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import lightning as L  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from smallnet_lit.data.crop import CropConfig  # noqa: E402
from smallnet_lit.data.faces import FaceDataset  # noqa: E402
from smallnet_lit.data.synthetic import SyntheticFaces  # noqa: E402
from smallnet_lit.model.module import LandmarkModule  # noqa: E402
from smallnet_lit.training.config import config_dir  # noqa: E402
from tests.helpers.faces import SHARED_DATA, write_ibug, write_wflw  # noqa: E402

# One worker of `pytest -n 2` per core: one thread each (more only fight over the cores).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# Small enough that a fit step takes milliseconds: 64 px input, 8x8 head grid.
TINY = [
    "model.net.input_size=64",
    "model.net.widths=[8,16,16]",
    "model.net.depths=[1,1,1]",
    "data.batch_size=4",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)  # lets ${hydra:runtime.output_dir} resolve
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.root_dir = str(output_dir)
        cfg.paths.cache_dir = str(output_dir / "cache")
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    def make(overrides: list[str] = (), name: str = "train", tiny: bool = True) -> DictConfig:
        return compose_config(name, [*TINY, *overrides] if tiny else list(overrides), tmp_path / "run")

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def wflw_root(tmp_path) -> Path:
    return write_wflw(tmp_path / "WFLW")


@pytest.fixture
def ibug_root(tmp_path) -> Path:
    return write_ibug(tmp_path / "300w")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A 68-point SmallNet after a few steps on synthetic faces (weights need not be good)."""
    out = tmp_path_factory.mktemp("ckpt")
    model = LandmarkModule(
        net=dict(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1]),
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
        scheme="ibug68",
    )
    ds = FaceDataset(SyntheticFaces(16, scheme="ibug68"), 64, CropConfig())
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(ds, batch_size=8))
    trainer.save_checkpoint(out / "tiny.ckpt")
    return out / "tiny.ckpt"


def pytest_collection_modifyitems(config, items):
    """One skip rule for the tests that read real faces: they run where ../shared/data is."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED_DATA} not present")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)
