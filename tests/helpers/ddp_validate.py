"""Validate a checkpoint on 1 or 2 CPU processes (DDP, gloo); each rank writes its metrics
as JSON to OUT_DIR/rank<N>.json (a file each: the ranks' prints can interleave on stdout).

    python -m tests.helpers.ddp_validate CKPT WORLD_SIZE OUT_DIR
Used by test_operations: run as its own program because DDP re-launches the command."""

import json
import sys
from pathlib import Path

import lightning as L

from smallnet_lit.data.datamodule import FaceDataModule
from smallnet_lit.data.synthetic import SyntheticFaces
from smallnet_lit.model.module import load_model


def main() -> None:
    ckpt, world, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    model = load_model(ckpt)
    # 21 faces: 11 on rank 0 and 10 on rank 1, so padding or a mean of per-rank means
    # would both change the result.
    dm = FaceDataModule(None, SyntheticFaces(21, seed=2), input_size=model.net.input_size, batch_size=3)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    result = trainer.validate(model, datamodule=dm, verbose=False)[0]
    local_faces = len(model.val_metrics.per_face())
    metrics = {
        **{k: float(v) for k, v in result.items()},
        "world_size": trainer.world_size,
        "rank": trainer.global_rank,
        "local_faces": local_faces,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(metrics))
    # Close gloo before the interpreter exits: a process group left open can abort the
    # process at exit ("terminate called without an active exception").
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
