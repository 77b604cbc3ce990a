"""How fast training runs and what holds it back: images per second, the share of each step
spent waiting for the data loader, and on CUDA the GPU's utilisation and peak memory.

On in every run (conf/callbacks/default.yaml; `callbacks.throughput.enabled=false` turns it
off): writes OUTPUT_DIR/throughput.json at the end of fit and logs one line. The loader keeps up
when the wait is a small share of the step (under 10%); otherwise add workers
(`data.num_workers`) or a faster disk, not a faster GPU.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger(__name__)

KEEPS_UP_BELOW = 0.10  # data-wait share of a step under which the loader is not the bottleneck


class Throughput(L.Callback):
    """Times the training steps after `warmup_steps` of each epoch's start (worker start-up,
    compilation and cuDNN autotuning are not throughput). On CUDA each step is synchronized, so
    its time is the GPU's, and the utilisation is sampled every `sample_every` steps."""

    def __init__(self, enabled: bool = True, warmup_steps: int = 5, sample_every: int = 20) -> None:
        self.enabled, self.warmup_steps, self.sample_every = enabled, warmup_steps, sample_every
        self.images = self.steps = 0
        self.step_s = self.wait_s = 0.0
        self.utilisation: list[float] = []
        self._last_end: float | None = None
        self._epoch_step, self._start, self._measuring = 0, 0.0, False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end, self._epoch_step = None, 0  # the epoch's first fetch starts the workers

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        self._measuring = self._epoch_step >= self.warmup_steps and self._last_end is not None
        if self._measuring:
            self.wait_s += now - self._last_end
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        end = time.perf_counter()
        if self._measuring:
            self.step_s += end - self._start
            self.steps += 1
            self.images += len(batch["image"]) * trainer.world_size
            sample = pl_module.device.type == "cuda" and self.steps % self.sample_every == 1
            if sample and (u := gpu_utilisation(pl_module.device)) is not None:
                self.utilisation.append(u)
        self._epoch_step += 1
        self._last_end = time.perf_counter()

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        total = self.step_s + self.wait_s
        device = pl_module.device
        report = {
            "steps_measured": self.steps,
            "images_per_s": round(self.images / total, 1) if total else None,
            "step_ms": round(1000 * self.step_s / self.steps, 2) if self.steps else None,
            "data_wait_ms": round(1000 * self.wait_s / self.steps, 2) if self.steps else None,
            "data_wait_share": round(self.wait_s / total, 3) if total else None,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "num_workers": getattr(getattr(trainer, "datamodule", None), "num_workers", None),
        }
        report["loader_keeps_up"] = report["data_wait_share"] is not None and report["data_wait_share"] < KEEPS_UP_BELOW
        if device.type == "cuda":
            report["gpu_utilisation_pct"] = (
                round(sum(self.utilisation) / len(self.utilisation), 1) if self.utilisation else None
            )
            report["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
        return report

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        report = self.summary(trainer, pl_module)
        Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        (Path(trainer.default_root_dir) / "throughput.json").write_text(json.dumps(report, indent=1))
        if not self.steps:
            log.info("throughput: no steps measured (the first %d of each epoch are warm-up)", self.warmup_steps)
            return
        log.info(
            "throughput: %.0f images/s over %d steps (%s, %d process(es)); step %.1f ms, waiting for data %.1f ms "
            "(%.0f%%: %s)%s",
            report["images_per_s"], self.steps, report["precision"], report["world_size"], report["step_ms"],
            report["data_wait_ms"], 100 * report["data_wait_share"],
            "the loader keeps up" if report["loader_keeps_up"] else "the loader holds training back",
            f"; GPU busy {report['gpu_utilisation_pct']}%, peak {report['peak_memory_gb']} GB"
            if pl_module.device.type == "cuda" else "",
        )  # fmt: skip


def gpu_utilisation(device: torch.device) -> float | None:
    """Percent of the last sample period the GPU was busy (NVML through torch, else nvidia-smi)."""
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - pynvml missing or unsupported: ask nvidia-smi
        pass
    if not shutil.which("nvidia-smi"):
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return float(out.stdout.strip().splitlines()[0])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None
