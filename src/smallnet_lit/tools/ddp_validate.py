"""Validate one checkpoint on 1 or N processes (DDP): the metrics must be the same, as every
face is evaluated once and the per-face errors are gathered. Each rank writes its metrics to
OUT_DIR/rank<N>.json (a file each: the ranks' prints can interleave on stdout).

    python -m smallnet_lit.tools.ddp_validate CKPT WORLD_SIZE OUT_DIR [--accelerator cpu|gpu]
        [--wflw ROOT]

Faces: 21 synthetic ones by default (11 on rank 0 and 10 on rank 1, so padding or a mean of
per-rank means would both change the result), or the test split of a WFLW-layout folder.
Run as its own program: DDP re-launches the command for every rank. Used by the tests (CPU,
gloo) and by tools.gpu_check (CUDA, NCCL)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L

from smallnet_lit.data.datamodule import FaceDataModule
from smallnet_lit.data.synthetic import SyntheticFaces
from smallnet_lit.model.module import load_model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.ddp_validate", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("world_size", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--wflw", type=Path, help="validate on this WFLW-layout folder's test split")
    args = p.parse_args(argv)
    model = load_model(args.ckpt)
    if args.wflw:
        from smallnet_lit.data.wflw import WFLWFaces

        faces = WFLWFaces(args.wflw, split="test", cache=None)
    else:
        faces = SyntheticFaces(21, seed=2, scheme=model.scheme.name)
    dm = FaceDataModule(None, faces, input_size=model.net.input_size, batch_size=3 if not args.wflw else 32)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.world_size,
        strategy="ddp" if args.world_size > 1 else "auto",
        precision=32,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    result = trainer.validate(model, datamodule=dm, verbose=False)[0]
    metrics = {
        **{k: float(v) for k, v in result.items()},
        "world_size": trainer.world_size,
        "rank": trainer.global_rank,
        "local_faces": len(model.val_metrics.per_face()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(metrics))
    # Close the process group before the interpreter exits: one left open can abort the
    # process at exit ("terminate called without an active exception").
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
