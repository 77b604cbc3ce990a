"""Train SmallNet: `python -m smallnet_lit.train +experiment=demo [key=value ...]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.sample import PIXEL_MEAN, PIXEL_STD
from smallnet_lit.model.checkpoints import (
    SHAPE_FREE_KEYS,
    load_net,
    network_difference,
    read_checkpoint,
    resolve_model,
)
from smallnet_lit.training.config import config_dir, plain, user_errors_exit_2
from smallnet_lit.training.instantiate import callbacks_from, datamodule_from, model_from
from smallnet_lit.training.reporting import finish, loggers_from, report_test

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; return all logged metrics."""
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise ValueError(f"trainer.max_epochs must be at least 1 (or -1: no limit), got {max_epochs}")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = datamodule_from(cfg.data, cfg.model.net.input_size)
    model = model_from(cfg.model, datamodule.scheme.name, datamodule.attribute_names)
    # The model carries the crop protocol it is trained with: prediction and eval read it.
    model.hparams["protocol"] = {
        "crop_scale": float(datamodule.eval_crop.scale), "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD,
    }  # fmt: skip
    if cfg.get("init_from"):
        start_from(model, cfg.init_from)
    if cfg.get("ckpt_path"):  # a clear error for a missing, corrupt or other network's file, before any work
        check_network(model, read_checkpoint(cfg.ckpt_path), f"ckpt_path={cfg.ckpt_path}")
    loggers = loggers_from(cfg.get("logger"))
    callbacks = callbacks_from(cfg.get("callbacks"))
    if cfg.get("optuna_trial"):  # a trial of hydra/sweeper=smallnet_optuna: report each epoch, maybe prune
        from smallnet_lit.training.optuna_sweep import TrialPruning

        callbacks.append(TrialPruning(**cfg.optuna_trial))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
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
    ckpt = read_checkpoint(path)
    if ckpt["hyper_parameters"].get("net", {}).get("reparam") and not model.hparams.net.get("reparam"):
        # a RepVGG checkpoint into its deployed net (e.g. quantization-aware fine-tuning)
        ckpt = _with_net(ckpt, load_net(path).net.deployed())
        log.info("folding the RepVGG branches of %s into plain convs", path)
    elif model.hparams.net.get("reparam") and not ckpt["hyper_parameters"].get("net", {}).get("reparam"):
        # a trained plain net grows RepVGG branches that start at zero: the same function,
        # more to train (docs/results.md: run F96LR)
        try:
            ckpt = _with_net(ckpt, load_net(path).net.grown())
        except ValueError as e:
            raise BadInputError(f"init_from={path}: {e}; this checkpoint's convs have no BatchNorm") from None
        log.info("%s grows RepVGG branches (1x1 and identity, starting at zero) beside its convs", path)
    elif _plain_with_norm(ckpt["hyper_parameters"].get("net", {})) and not model.hparams.net.get("norm", False):
        # each BatchNorm folded into its conv (its running statistics): the deployed net, e.g.
        # for quantization-aware fine-tuning of a plain checkpoint (docs/operations.md)
        ckpt = _with_net(ckpt, load_net(path).net.grown().deployed())
        log.info("folding the BatchNorms of %s into its convs", path)
    ckpt = _first_convs_of_each_stage(ckpt, model, path)
    check_network(model, ckpt, f"init_from={weights}", ignore=SHAPE_FREE_KEYS)
    theirs, ours = ckpt["hyper_parameters"]["net"], model.hparams.net
    if moved := [f"{k} {theirs.get(k)} -> {ours.get(k)}" for k in SHAPE_FREE_KEYS if theirs.get(k) != ours.get(k)]:
        log.info("%s's convs start reading another input: %s", path, ", ".join(moved))
    state = ckpt["state_dict"]
    model.net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    # training-only weights (feature distillation's projection) come along where they fit;
    # a run that starts to distill from a checkpoint without them trains them from scratch
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("net.")}
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    if fresh := sorted(set(own) - set(fitting)):
        log.info("%s has no %s: trained from scratch", path, ", ".join(fresh))
    log.info("starting from the weights of %s", path)


def _plain_with_norm(net_config: dict) -> bool:
    return bool(net_config.get("norm")) and not net_config.get("reparam")


def _with_net(ckpt: dict, net) -> dict:
    """The checkpoint with `net`'s weights and config in place of its own network's."""
    rest = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("net.")}
    return {
        **ckpt,
        "state_dict": {**rest, **{f"net.{k}": v for k, v in net.state_dict().items()}},
        "hyper_parameters": {**ckpt["hyper_parameters"], "net": net.config},
    }


def _first_convs_of_each_stage(ckpt: dict, model: L.LightningModule, path) -> dict:
    """A net with fewer convs in some stages starts from each stage's first ones: the stages
    are built conv by conv, so the shallower stage's modules are the deeper one's first."""
    theirs, ours = ckpt["hyper_parameters"].get("net", {}), model.hparams.net
    deep, shallow = list(theirs.get("depths", [])), list(ours.get("depths", []))
    if deep == shallow or len(deep) != len(shallow) or any(a > b for a, b in zip(shallow, deep, strict=True)):
        return ckpt  # the same depths, or not a cut of them: check_network names what differs

    def kept(key: str) -> bool:
        parts = key.split(".")
        if parts[:2] != ["net", "stages"]:
            return True
        return int(parts[3]) < len(model.net.stages[int(parts[2])])

    for stage, (a, b) in enumerate(zip(deep, shallow, strict=True)):
        if a != b:
            log.info("%s: stage %d keeps the first %d of its %d convs", path, stage, b, a)
    return {
        **ckpt,
        "state_dict": {k: v for k, v in ckpt["state_dict"].items() if kept(k)},
        "hyper_parameters": {**ckpt["hyper_parameters"], "net": {**theirs, "depths": shallow}},
    }


def check_network(model: L.LightningModule, ckpt: dict, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Refuse, in one line, weights of another network (other point count, widths, ...)."""
    theirs = ckpt["hyper_parameters"].get("net", {})
    if diff := network_difference(dict(model.hparams.net), dict(theirs), ignore):
        raise BadInputError(f"{what}: the checkpoint's network differs from this run's: {diff}")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@user_errors_exit_2
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
