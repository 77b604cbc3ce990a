"""Training-loader throughput, with and without the crop cache:
`python -m smallnet_lit.tools.bench_loader data=ibug300w [+batches=20] [data.num_workers=2]`.

Small sets can be drawn with replacement: data.train_samples_per_epoch=1000.

Prints images/s for each setting; the first pass over a new cache (building it) is
reported separately from reading it."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig, open_dict

from smallnet_lit.training.config import config_dir
from smallnet_lit.training.instantiate import datamodule_from


def images_per_second(cfg: DictConfig, batches: int) -> float:
    dm = datamodule_from(cfg.data, cfg.model.net.input_size, only_split="train")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += len(next(it)["image"])
        except StopIteration:
            break
    return n / (time.perf_counter() - start)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    batches = int(cfg.get("batches", 20))
    print(
        f"data: {cfg.data.train._target_} at {cfg.data.get('root')}, batch {cfg.data.batch_size}, "
        f"{cfg.data.num_workers} workers, input {cfg.model.net.input_size}"
    )
    results = {}
    if "cache" in cfg.data:
        with open_dict(cfg):
            saved = cfg.data.cache.dir
            cfg.data.cache.dir = None
        results["no cache (decode photos)"] = images_per_second(cfg, batches)
        with open_dict(cfg):
            cfg.data.cache.dir = saved
        t = time.perf_counter()
        datamodule_from(cfg.data, cfg.model.net.input_size, only_split="train")
        print(f"cache ready in {time.perf_counter() - t:.1f} s (built now, or found from an earlier run)")
    results["cached crops" if "cache" in cfg.data else "rendered on the fly"] = images_per_second(cfg, batches)
    for name, ips in results.items():
        print(f"{name:>28}: {ips:8.1f} images/s")


if __name__ == "__main__":
    main()
