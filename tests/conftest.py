"""Shared fixtures: composed Hydra configs with tiny overrides, and generated datasets in
both on-disk formats (WFLW lists, 300-W .pts) drawn from the synthetic faces."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from smallnet_lit.config import config_dir  # noqa: E402
from smallnet_lit.data.synthetic import render_face  # noqa: E402
from smallnet_lit.landmarks import WFLW98_TO_IBUG68  # noqa: E402

torch.set_num_threads(2)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

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


def write_wflw(root: Path, n_train: int = 12, n_test: int = 8, size: int = 160) -> Path:
    """A WFLW-layout folder of synthetic faces (official file names and line format)."""
    ann_dir = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann_dir.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 11), ("test", n_test, 12)):
        lines = []
        for i in range(n):
            image, points = render_face(np.random.default_rng([seed, i]), size)
            rel = f"{i % 3}--Event/{split}_{i}.jpg"
            (root / "WFLW_images" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "WFLW_images" / rel), image[..., ::-1])
            box = [*points.min(0), *points.max(0)]
            attrs = [i % 2, (i // 2) % 2, 0, 0, int(i == 0), 0]
            fields = [f"{v:.4f}" for v in points.ravel()] + [str(int(b)) for b in box] + [str(a) for a in attrs] + [rel]
            lines.append(" ".join(fields))
        (ann_dir / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_pts(path: Path, points: np.ndarray, header: bool = True) -> None:
    body = "\n".join(f"{x + 1:.4f} {y + 1:.4f}" for x, y in points)  # .pts is 1-based
    text = f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n" if header else body + "\n"
    path.write_text(text)


def write_ibug(root: Path, n_photos: int = 10, faces_per_photo: int = 2, size: int = 160) -> Path:
    """A 300-W-format tree of synthetic faces: <set>/<photo>_<n>.jpg + .pts."""
    for p in range(n_photos):
        sub = root / ("afw" if p % 2 else "helen/trainset")
        sub.mkdir(parents=True, exist_ok=True)
        for n in range(1, faces_per_photo + 1):
            image, points = render_face(np.random.default_rng([21, p, n]), size)
            cv2.imwrite(str(sub / f"photo{p}_{n}.jpg"), image[..., ::-1])
            write_pts(sub / f"photo{p}_{n}.pts", points[WFLW98_TO_IBUG68], header=bool(n % 2))
    return root


@pytest.fixture
def wflw_root(tmp_path) -> Path:
    return write_wflw(tmp_path / "WFLW")


@pytest.fixture
def ibug_root(tmp_path) -> Path:
    return write_ibug(tmp_path / "300w")
