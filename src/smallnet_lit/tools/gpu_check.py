"""Check the GPU path in one short run (a few minutes on one GPU): the baseline recipe on a
rendered WFLW-layout folder, a few hundred steps per setting, with images/s, the loader's
share of each step, GPU utilisation and memory; with 2+ GPUs also DDP, and a check that
validating on 2 processes gives the same metrics as on 1.

    python -m smallnet_lit.tools.gpu_check OUT [--steps 300] [--faces 3000]
        [--precision bf16-mixed 16-mixed] [--compile] [--workers N]

OUT/gpu_check.json holds the report; OUT/runs/<setting>/ each run (its throughput.json and
logs); OUT/WFLW the rendered faces (kept for the next call). Without CUDA it rehearses the
same path on the CPU (`--accelerator cpu`; `--tiny` for a small net): what the tests run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger("smallnet_lit.gpu_check")

SAME_METRICS_REL = 1e-4  # DDP vs one process, fp32 validation: summation order only


def environment() -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        env["bf16"] = torch.cuda.is_bf16_supported()
    else:
        env["gpus"] = []
    return env


def train_run(out: Path, name: str, overrides: list[str]) -> dict:
    """One training run as a user starts it (its own process); its throughput report."""
    run_dir = out / "runs" / name
    cmd = [sys.executable, "-m", "smallnet_lit.train", *overrides, f"hydra.run.dir={run_dir}"]
    log.info("%s: %s", name, " ".join(cmd[2:]))
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "runs" / f"{name}.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        return {"name": name, "failed": done.returncode, "wall_s": round(wall, 1), "log_tail": tail}
    report = json.loads((run_dir / "throughput.json").read_text())
    return {"name": name, "wall_s": round(wall, 1), **report, "checkpoint": str(run_dir / "checkpoints" / "last.ckpt")}


def ddp_matches_one_process(out: Path, ckpt: str, accelerator: str, wflw: Path) -> dict:
    """Validate one checkpoint on 1 and on 2 processes; the metrics must agree."""
    results = {}
    for world in (1, 2):
        target = out / "ddp_validate" / str(world)
        cmd = [sys.executable, "-m", "smallnet_lit.tools.ddp_validate", ckpt, str(world), str(target)]
        done = subprocess.run([*cmd, "--accelerator", accelerator, "--wflw", str(wflw)], capture_output=True, text=True)
        if done.returncode != 0:
            return {"failed": f"{world} process(es): " + " | ".join((done.stdout + done.stderr).splitlines()[-5:])}
        results[world] = json.loads((target / "rank0.json").read_text())
    keys = [k for k in results[1] if k.startswith("val/")]
    differ = {
        k: (results[1][k], results[2][k])
        for k in keys
        if abs(results[1][k] - results[2][k]) > SAME_METRICS_REL * max(abs(results[1][k]), 1e-12)
    }
    return {"same": not differ, "differ": differ, "one": {k: results[1][k] for k in keys}}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=300, help="training steps per setting (per process)")
    p.add_argument("--faces", type=int, default=3000, help="training faces to render (test: a fifth)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", nargs="+", help="settings to time (default: bf16-mixed and 16-mixed on CUDA)")
    p.add_argument("--compile", action="store_true", help="also time model.compile=true")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data.num_workers")
    p.add_argument("--accelerator", choices=["auto", "gpu", "cpu"], default="auto")
    p.add_argument("--ddp", type=int, default=2, help="processes for the DDP run and check (0: skip)")
    p.add_argument("--tiny", action="store_true", help="a small net (a CPU rehearsal of the path)")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    cuda = args.accelerator in ("auto", "gpu") and bool(env["gpus"])
    if args.accelerator == "gpu" and not cuda:
        log.error("--accelerator gpu: no CUDA device here (torch %s, CUDA %s)", env["torch"], env["cuda"])
        return 2
    accelerator = "gpu" if cuda else "cpu"
    precisions = args.precision or (["bf16-mixed", "16-mixed"] if cuda else ["bf16-mixed"])
    if cuda and not env["bf16"]:
        precisions = [p for p in precisions if not p.startswith("bf16")] or ["16-mixed"]
    log.info("environment: %s", env)

    wflw = out / "WFLW"
    if not (wflw / "synthetic_wflw.json").is_file():
        from smallnet_lit.tools.synthetic_wflw import main as synthetic_wflw

        start = time.perf_counter()
        if synthetic_wflw([str(wflw), "--train", str(args.faces), "--test", str(max(8, args.faces // 5))]) != 0:
            return 1
        env["render_s"] = round(time.perf_counter() - start, 1)
    common = [
        "+experiment=baseline", f"data.root={wflw}", f"data.cache.dir={out / 'cache'}",
        f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
        # one epoch of exactly --steps steps per process, a short validation, no test
        f"data.train_samples_per_epoch={args.steps * args.batch_size}", "trainer.max_epochs=1",
        "trainer.limit_val_batches=10", "test=false", "trainer.enable_progress_bar=false", "logger=csv",
    ]  # fmt: skip
    if args.tiny:
        common += ["model.net.input_size=64", "model.net.widths=[8,16,16]", "model.net.depths=[1,1,1]"]
    device = ["trainer=gpu"] if cuda else ["trainer.accelerator=cpu"]
    settings = [(f"1x{accelerator}_{p}", [*device, f"trainer.precision={p}"]) for p in precisions]
    if args.compile:
        settings.append((f"1x{accelerator}_{precisions[0]}_compile", [*settings[0][1], "model.compile=true"]))
    n_ddp = min(args.ddp, len(env["gpus"])) if cuda else args.ddp
    if n_ddp >= 2:
        ddp = ["trainer=ddp", f"trainer.devices={n_ddp}", f"trainer.precision={precisions[0]}"]
        ddp.append(f"data.train_samples_per_epoch={args.steps * args.batch_size * n_ddp}")  # --steps per process
        settings.append(
            (f"{n_ddp}x{accelerator}_ddp_{precisions[0]}", ddp + ([] if cuda else ["trainer.accelerator=cpu"]))
        )
    runs = [train_run(out, name, common + extra) for name, extra in settings]
    report = {"environment": env, "runs": runs}
    first = next((r for r in runs if "failed" not in r), None)
    if n_ddp >= 2 and first:
        report["ddp_same_metrics"] = ddp_matches_one_process(out, first["checkpoint"], accelerator, wflw)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))

    print(f"\n{'setting':34} {'images/s':>9} {'step ms':>8} {'wait %':>7} {'GPU %':>6} {'GB':>6} {'wall s':>7}")
    for r in runs:
        if "failed" in r:
            print(f"{r['name']:34} FAILED (exit {r['failed']}): {r['log_tail'][-1] if r['log_tail'] else ''}")
            continue
        if not r["steps_measured"]:
            print(f"{r['name']:34} no steps measured (--steps {args.steps} is within the warm-up)")
            continue
        print(
            f"{r['name']:34} {r['images_per_s']:9.0f} {r['step_ms']:8.1f} {100 * r['data_wait_share']:7.1f} "
            f"{r.get('gpu_utilisation_pct') or '-':>6} {r.get('peak_memory_gb') or '-':>6} {r['wall_s']:7.1f}"
        )
    if "ddp_same_metrics" in report:
        check = report["ddp_same_metrics"]
        print(
            "DDP validation == one process:", check.get("same", False), check.get("differ") or check.get("failed", "")
        )
    print(f"report: {out / 'gpu_check.json'}")
    failed = any("failed" in r for r in runs) or not report.get("ddp_same_metrics", {"same": True}).get("same", False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
