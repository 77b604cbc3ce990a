"""Running the entry points' work from tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import open_dict

from smallnet_lit.training.evaluate import evaluate


def run_eval(make_cfg, out: Path, ckpt: Path, overrides: list[str]) -> tuple[dict, Path]:
    """`python -m smallnet_lit.eval ckpt_path=CKPT OVERRIDES`, writing into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = make_cfg([f"ckpt_path={ckpt}", *overrides], name="eval", tiny=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return evaluate(cfg), out
