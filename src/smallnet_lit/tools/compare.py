"""Compare the runs of a sweep:

    python -m smallnet_lit.tools.compare multirun/demo/2026-11-26_10-00-00 [--out DIR]
    python -m smallnet_lit.tools.compare --wandb ENTITY/PROJECT [--group NAME]

Local mode reads every run dir below the folder (Hydra's .hydra/overrides.yaml and the
CSV log); W&B mode asks the W&B API (needs a login and network). Prints one table sorted
by val/nme_best with each run's overrides, and writes comparison.csv and comparison.png
(val NME per epoch of every run, and the best NME per run)."""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

METRICS = ("val/nme_best", "val/nme", "val/fr", "val/auc", "test/nme", "test/fr", "test/auc")


@dataclass
class Run:
    name: str
    overrides: list[str]
    metrics: dict[str, float]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, val/nme)
    status: str = "finished"  # finished | running | failed | stopped

    @property
    def best(self) -> float:
        return self.metrics.get("val/nme_best", math.inf)


RUNNING_WITHIN_S = 600  # a log written to this recently: the run is taken as still running


def complete_rows(log: Path) -> list[dict[str, str]]:
    """The rows of a CSV log that were written whole: a run still writing (or killed while
    writing) leaves a last line cut short, whose `0.05` may read as `0`."""
    text = log.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    rows = []
    for row in csv.DictReader(lines):
        if None in row or any(v is None for v in row.values()):
            continue  # more or fewer fields than the header
        try:
            values = [float(v) for v in row.values() if v not in ("", None)]
        except ValueError:
            continue
        if all(math.isfinite(v) for v in values):
            rows.append(row)
    return rows


def run_status(run_dir: Path, metrics: dict[str, float], log: Path) -> str:
    train_log = run_dir / "train.log"
    text = train_log.read_text(errors="replace") if train_log.is_file() else ""
    if "test/nme" in metrics or "best checkpoint:" in text:
        return "finished"
    if "Error executing job" in text or "Traceback" in text:
        return "failed"
    return "running" if time.time() - log.stat().st_mtime < RUNNING_WITHIN_S else "stopped"


def read_local_run(run_dir: Path) -> Run | None:
    """A Hydra training run dir with a CSV log; metrics at the epoch of the best val/nme,
    from the rows written whole. Folders of other kinds (eval runs) give None."""
    log = run_dir / "csv" / "metrics.csv"
    if not log.is_file():
        return None
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    rows = complete_rows(log)
    if rows and "epoch" not in rows[0]:
        return None  # not a training log
    curve, best_row = [], None
    for row in rows:
        if row.get("val/nme"):
            curve.append((int(float(row["epoch"])), float(row["val/nme"])))
            if best_row is None or float(row["val/nme"]) < float(best_row["val/nme"]):
                best_row = row
    metrics = {}
    if best_row is not None:
        metrics = {k: float(best_row[k]) for k in ("val/nme", "val/fr", "val/auc") if best_row.get(k)}
        metrics["val/nme_best"] = metrics["val/nme"]
    for row in rows:  # test metrics come once, after fitting
        metrics.update({k: float(row[k]) for k in ("test/nme", "test/fr", "test/auc") if row.get(k)})
    return Run(str(run_dir), list(overrides or []), metrics, curve, run_status(run_dir, metrics, log))


def collect_local(root: Path) -> list[Run]:
    runs = [read_local_run(p.parent.parent) for p in sorted(root.rglob("csv/metrics.csv"))]
    return sorted((r for r in runs if r is not None), key=lambda r: r.best)


def collect_wandb(project: str, group: str | None = None) -> list[Run]:
    import wandb

    api = wandb.Api(timeout=20)
    runs = []
    for r in api.runs(project, filters={"group": group} if group else None):
        history = r.history(keys=["epoch", "val/nme"], pandas=False)
        curve = [(int(h["epoch"]), float(h["val/nme"])) for h in history if h.get("val/nme") is not None]
        metrics = {k: float(r.summary[k]) for k in METRICS if isinstance(r.summary.get(k), int | float)}
        overrides = [f"{k}={v}" for k, v in sorted(r.config.items()) if not k.startswith("_")][:20]
        runs.append(Run(r.name, overrides, metrics, curve))
    return sorted(runs, key=lambda r: r.best)


def table(runs: list[Run]) -> str:
    lines = [
        f"{'#':>3}  {'val/nme_best':>12}  {'val/fr':>7}  {'val/auc':>7}  {'test/nme':>8}  {'status':>8}  overrides"
    ]
    for i, r in enumerate(runs, 1):
        m = r.metrics
        cells = [m.get("val/nme_best"), m.get("val/fr"), m.get("val/auc"), m.get("test/nme")]
        txt = [f"{v:.4f}" if v is not None else "-" for v in cells]
        lines.append(
            f"{i:>3}  {txt[0]:>12}  {txt[1]:>7}  {txt[2]:>7}  {txt[3]:>8}  {r.status:>8}  "
            f"{' '.join(r.overrides) or '(none)'}"
        )
    return "\n".join(lines)


def write_outputs(runs: list[Run], out: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "comparison.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *METRICS, "status", "overrides"])
        for r in runs:
            w.writerow([r.name, *[r.metrics.get(k, "") for k in METRICS], r.status, " ".join(r.overrides)])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for i, r in enumerate(runs, 1):
        if r.curve:
            a.plot(*zip(*r.curve, strict=True), marker="o", ms=3, label=f"#{i}")
    a.set_xlabel("epoch")
    a.set_ylabel("val NME")
    a.set_title("validation NME per epoch")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    scored = [(f"#{i}", r.best) for i, r in enumerate(runs, 1) if math.isfinite(r.best)]  # unfinished runs have none
    b.barh([name for name, _ in scored][::-1], [best for _, best in scored][::-1])
    b.set_xlabel("best val NME (lower is better)")
    b.set_title("runs, best first")
    fig.tight_layout()
    fig.savefig(out / "comparison.png")
    plt.close(fig)
    return out / "comparison.csv", out / "comparison.png"


def compare_study(storage: str, name: str | None, out: Path) -> int:
    """An Optuna study's trials best first (pruned and failed ones marked), the parameters'
    importances, and study_history.png (each trial's value and the best so far)."""
    import optuna

    from smallnet_lit.training.optuna_sweep import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = make_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
    if name is None and len(names) != 1:
        print(f"{storage} holds {len(names)} studies ({', '.join(names) or 'none'}): name one with --study-name")
        return 2
    study = optuna.load_study(study_name=name or names[0], storage=backend)
    trials = sorted(study.trials, key=lambda t: (t.value is None, t.value if t.value is not None else 0.0))
    print(f"study {study.study_name}: {len(trials)} trials")
    print(f"{'trial':>5}  {'state':>8}  {'value':>10}  {'pruned at':>9}  params")
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        pruned = t.user_attrs.get("pruned_at_epoch", "")
        print(f"{t.number:>5}  {t.state.name:>8}  {value:>10}  {pruned!s:>9}  {t.params}")
    try:
        importances = optuna.importance.get_param_importances(study)
        print("parameter importances:", ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    except (RuntimeError, ValueError) as e:  # too few finished trials
        print(f"parameter importances: not available ({e})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = sorted((t.number, t.value) for t in study.trials if t.value is not None)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if done:
        numbers, values = zip(*done, strict=True)
        best = [
            min(values[: i + 1]) if study.direction.name == "MINIMIZE" else max(values[: i + 1])
            for i in range(len(values))
        ]
        ax.plot(numbers, values, "o", label="trial")
        ax.step(numbers, best, where="post", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title(f"study {study.study_name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "study_history.png")
    plt.close(fig)
    print(f"wrote {out / 'study_history.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", type=Path, help="a multirun (or any) folder holding run dirs")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    p.add_argument("--study", metavar="STORAGE", help="read an Optuna study (sqlite:///x.db, journal:///x.log) instead")
    p.add_argument("--study-name", help="with --study: which study (default: the storage's only one)")
    p.add_argument("--group", help="W&B group to keep")
    p.add_argument("--out", type=Path, help="where to write comparison.csv/png (default: the runs folder)")
    args = p.parse_args(argv)
    if sum(map(bool, (args.runs, args.wandb, args.study))) != 1:
        p.error("give a runs folder, --wandb ENTITY/PROJECT or --study STORAGE")
    if args.study:
        return compare_study(args.study, args.study_name, args.out or Path("."))
    runs = collect_wandb(args.wandb, args.group) if args.wandb else collect_local(args.runs)
    if not runs:
        print(f"no runs with a CSV log found under {args.runs or args.wandb}")
        return 1
    print(table(runs))
    csv_path, png = write_outputs(runs, args.out or args.runs or Path("."))
    print(f"wrote {csv_path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
