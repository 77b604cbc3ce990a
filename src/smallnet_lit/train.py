"""Train SmallNet: `python -m smallnet_lit.train +experiment=demo [key=value ...]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from smallnet_lit.inference.checkpoints import read_checkpoint, resolve_model
from smallnet_lit.training.config import config_dir, plain
from smallnet_lit.training.instantiate import callbacks_from, datamodule_from, model_from
from smallnet_lit.training.reporting import finish, loggers_from, report_test

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; return all logged metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = datamodule_from(cfg.data)
    model = model_from(cfg.model)
    if cfg.get("init_from"):
        start_from(model, cfg.init_from)
    if cfg.get("ckpt_path"):
        read_checkpoint(cfg.ckpt_path)  # a clear error for a missing or corrupt file, before any work
    loggers = loggers_from(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks_from(cfg.get("callbacks")), logger=loggers
    )
    for lg in loggers:
        lg.log_hyperparams(plain(cfg))

    log.info("training %s on %s", type(model.net).__name__, type(datamodule.sources["train"]).__name__)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("test") and datamodule.sources["test"] is None:
        log.info("no test split in this data config: skipping the test run")
    elif cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        log.info("testing %s", best or "the final weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if trainer.is_global_zero:
            report_test(model, datamodule, loggers, Path(cfg.paths.output_dir))
    finish(loggers)

    summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.split("/")[0] in ("val", "test"))
    log.info("finished: %s", summary)
    if best := (trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""):
        log.info("best checkpoint: %s", best)
    return metrics


def start_from(model: L.LightningModule, weights: str) -> None:
    """Load the weights of a checkpoint or a shipped model's name (fine-tuning, warm restarts)."""
    path = resolve_model(weights)
    model.load_state_dict(read_checkpoint(path)["state_dict"])
    log.info("starting from the weights of %s", path)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
