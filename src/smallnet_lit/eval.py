"""Evaluate a checkpoint: `python -m smallnet_lit.eval ckpt_path=PATH data=... split=test`
(smallnet-eval). What it computes and writes: smallnet_lit.training.evaluate."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from smallnet_lit.training.config import config_dir, user_errors_exit_2
from smallnet_lit.training.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
@user_errors_exit_2
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
