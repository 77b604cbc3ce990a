"""What a run shows people: loggers that never hang, the CED curve and a grid of landmark
overlays in every logger that takes pictures, and a clean end between sweep jobs."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import hydra
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, open_dict

from smallnet_lit.inference.plots import draw_landmarks, plot_ced

log = logging.getLogger(__name__)


def wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
    return auth is not None


def loggers_from(cfg: DictConfig | None) -> list[Logger]:
    loggers = []
    for name, c in (cfg or {}).items():
        if c is None or "_target_" not in c:
            continue
        if c._target_.endswith("WandbLogger"):
            c = _wandb_settings(c)
        loggers.append(hydra.utils.instantiate(c))
        log.info("logging to %s", name)
    return loggers


def _wandb_settings(c: DictConfig) -> DictConfig:
    """Offline when asked (WANDB_MODE=offline) or when there is no login: a run is never
    blocked waiting for W&B; `wandb sync` uploads offline runs later."""
    offline = (
        bool(c.get("offline")) or os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_credentials()
    )
    with open_dict(c):
        c.offline = offline
    if offline:
        log.info("W&B logging offline (no login or WANDB_MODE=offline): sync later with `wandb sync`")
    return c


def overlay_grid(model, batch: dict, columns: int = 4, max_faces: int = 16) -> np.ndarray:
    """Predicted (green) and true (red) landmarks on the first faces of a batch."""
    from smallnet_lit.data.faces import PIXEL_MEAN, PIXEL_STD

    images = batch["image"][:max_faces]
    with torch.no_grad():
        points, _ = model(images.to(model.device))
    tiles = []
    for img, pred, true in zip(images, points.cpu().numpy(), batch["points"][:max_faces].numpy(), strict=True):
        rgb = (img.permute(1, 2, 0).numpy() * PIXEL_STD + PIXEL_MEAN).clip(0, 255).astype(np.uint8)
        tiles.append(draw_landmarks(rgb, pred, target=true))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def log_pictures(loggers: list[Logger], pictures: dict[str, np.ndarray], step: int | None = None) -> None:
    for lg in loggers:
        for key, image in pictures.items():
            if isinstance(lg, WandbLogger):
                lg.log_image(key=key, images=[image], step=step)
            elif isinstance(lg, TensorBoardLogger):
                lg.experiment.add_image(key, image, global_step=step or 0, dataformats="HWC")


def report_test(model, datamodule, loggers: list[Logger], out_dir: Path) -> None:
    """Write the CED curve and an overlay grid of the test faces; log them as pictures."""
    import cv2

    nme = model.test_metrics.per_face().cpu().numpy()
    if nme.size == 0:
        return
    ced = plot_ced({"test": nme}, out_dir / "ced_test.png", model.hparams.fr_threshold)
    batch = next(iter(datamodule.test_dataloader()))
    grid = overlay_grid(model, batch)
    cv2.imwrite(str(out_dir / "overlays_test.jpg"), grid[..., ::-1])
    log_pictures(loggers, {"test/ced": cv2.imread(str(ced))[..., ::-1], "test/overlays": grid})
    log.info("wrote %s and %s", ced, out_dir / "overlays_test.jpg")


def finish(loggers: list[Logger]) -> None:
    """Close W&B runs so the next job of a multirun starts its own run."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            wandb.finish()
        else:
            lg.finalize("success")
