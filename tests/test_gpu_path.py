"""The GPU path rehearsed on the CPU: tools.gpu_check with bf16 mixed precision, the
throughput report, DDP training on 2 processes at the recipe's epoch size, and DDP validation
equal to one process. On a CUDA machine the same command checks the real thing."""

import json

import pytest

from smallnet_lit.tools.gpu_check import main as gpu_check


@pytest.mark.slow
def test_gpu_check_rehearses_bf16_and_ddp_on_the_cpu(tmp_path):
    steps = 7  # per process; the first 5 of an epoch are warm-up
    args = [str(tmp_path), "--accelerator", "cpu", "--tiny", "--steps", str(steps), "--faces", "40", "--workers", "0"]
    assert gpu_check([*args, "--batch-size", "8"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    single, ddp = report["runs"]
    assert single["precision"] == "bf16-mixed" and single["world_size"] == 1
    assert single["steps_measured"] == steps - 5 and single["images_per_s"] > 0
    assert 0 <= single["data_wait_share"] < 1 and single["device"] == "cpu"
    # 2 processes: each trains --steps steps (the epoch is the recipe's size, shared out)
    assert ddp["world_size"] == 2 and ddp["steps_measured"] == steps - 5
    assert report["ddp_same_metrics"]["same"], report["ddp_same_metrics"]
    assert (tmp_path / "runs" / single["name"] / "throughput.json").is_file()


def test_compiled_training_keeps_plain_checkpoints(make_cfg, tmp_path):
    """model.compile compiles the forward only: the checkpoint is the plain network's."""
    import torch

    from smallnet_lit.train import train

    cfg = make_cfg(["model.compile=eager", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false"])
    assert train(cfg)["val/nme"] > 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"] and not any("_orig_mod" in k for k in ckpt["state_dict"])
