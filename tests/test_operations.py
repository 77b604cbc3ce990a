"""Sweeps, comparison, notebooks, W&B offline, DDP, submitit and resume: each run as users
run them, through the command line, on tiny settings."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from smallnet_lit.model.checkpoints import SHAPE_FREE_KEYS, network_difference
from smallnet_lit.model.module import load_model
from smallnet_lit.model.net import count_macs, count_params
from smallnet_lit.tools.compare import collect_local
from smallnet_lit.tools.compare import main as compare_main
from smallnet_lit.training.instantiate import model_from
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# The tests' tiny network (conftest.TINY) as a command line: the demo recipe on 32 faces.
TINY_CLI = [
    "+experiment=demo",
    *(o for o in TINY if not o.startswith("data.batch_size")),
    "data.train.num_faces=32",
    "data.val.num_faces=16",
    "data.test.num_faces=8",
    "data.train_samples_per_epoch=32",
    "data.batch_size=8",
]


# Subprocesses import `tests` from the checkout, and keep any path the caller set.
PYTHON_PATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "PYTHONPATH": PYTHON_PATH,
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> Path:
    """The grid sweep (8 jobs), tiny: every job trains one short epoch and tests."""
    out = tmp_path_factory.mktemp("grid")
    run_cli(
        [
            "smallnet_lit.train",
            "-m",
            "hparams_search=grid",
            *TINY_CLI,
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={out}",
        ],
        cwd=out,
    )
    return out


@pytest.mark.slow
def test_grid_sweep_runs_every_combination_and_compares(grid_sweep, capsys):
    runs = collect_local(grid_sweep)
    assert len(runs) == 8
    assert [r.best for r in runs] == sorted(r.best for r in runs)
    assert any("model.net.width_mult=0.5" in r.overrides for r in runs)
    assert compare_main([str(grid_sweep)]) == 0
    printed = capsys.readouterr().out
    assert "val/nme_best" in printed and "model.optimizer.lr=0.003" in printed
    assert (grid_sweep / "comparison.png").stat().st_size > 1000
    assert len((grid_sweep / "comparison.csv").read_text().splitlines()) == 9


@pytest.mark.slow
def test_comparison_notebook_executes(grid_sweep, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="smallnet_demo", storage=storage)
    for lr in (0.001, 0.003, 0.01):  # a finished study: three trials with their values
        trial = study.ask({"model.optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(trial, lr * 10)
    nb = nbformat.read(ROOT / "notebooks" / "compare_runs.ipynb", as_version=4)
    os.environ["SMALLNET_RUNS"], os.environ["SMALLNET_STUDY"] = str(grid_sweep), storage
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
    finally:
        del os.environ["SMALLNET_RUNS"], os.environ["SMALLNET_STUDY"]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
    study_cell = nb.cells[-1].get("outputs", [])
    assert any("image/png" in o.get("data", {}) for o in study_cell)  # the study's history
    assert any("COMPLETE" in o.get("text", "") for o in study_cell)


OPTUNA = ["smallnet_lit.train", "-m", "hparams_search=optuna_tpe", *TINY_CLI, "test=false"]


def optuna_study(storage: str, name: str = "smallnet_demo"):
    import optuna

    from smallnet_lit.training.optuna_sweep import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(storage))


@pytest.mark.slow
def test_optuna_search_minimizes_val_nme_best(tmp_path):
    run_cli([*OPTUNA, "hydra.sweeper.n_trials=2", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}"], cwd=tmp_path)
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna" and 0 < result["best_value"] < 10 and result["trials"]["COMPLETE"] == 2
    assert set(result["best_params"]) == {
        "model.optimizer.lr",
        "model.net.width_mult",
        "model.loss.alpha",
        "model.loss.beta",
    }


def test_a_pruned_trial_stops_early_and_is_marked_pruned(tmp_path):
    """A pruner that prunes at any NME above 0: every trial stops after its first epoch."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,upper:0.0}"
    run_cli(
        [*OPTUNA, "hydra.sweeper.n_trials=1", "trainer.max_epochs=3", pruner, f"hydra.sweeper.storage='{storage}'",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
    )  # fmt: skip
    (trial,) = optuna_study(storage).trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["pruned_at_epoch"] == 0
    rows = [r.split(",") for r in (tmp_path / "sweep" / "0" / "csv" / "metrics.csv").read_text().splitlines()]
    column = rows[0].index("val/nme")
    assert sum(1 for r in rows[1:] if len(r) > column and r[column]) == 1  # one validation epoch of 3
    out = run_cli(["smallnet_lit.tools.compare", "--study", storage, "--out", str(tmp_path)], cwd=tmp_path).stdout
    assert "PRUNED" in out and (tmp_path / "study_history.png").is_file()


@pytest.mark.slow
def test_two_sweeps_share_one_study_and_a_study_resumes(tmp_path):
    """Two sweep processes at once on one journal file: 4 trials in all, none trained twice;
    started again with n_trials=5, the study runs the one trial left."""
    storage = f"journal:///{tmp_path / 'study.log'}"
    args = [*OPTUNA, "hydra.sweeper.n_trials=4", "trainer.max_epochs=1", f"hydra.sweeper.storage='{storage}'"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": PYTHON_PATH, "OMP_NUM_THREADS": "1"}
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", *args, f"hydra.sweep.dir={tmp_path / f'sweep{i}'}"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    for p in sweeps:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    study = optuna_study(storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    trained = [t for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(complete) == 4 and len({tuple(sorted(t.params.items())) for t in trained}) == len(trained)
    jobs = sorted(
        p.name for d in ("sweep0", "sweep1") for p in (tmp_path / d).iterdir() if p.is_dir() and p.name.isdigit()
    )
    assert len(jobs) == len(trained)  # each trained trial ran in exactly one sweep
    run_cli([*args[:-2], "hydra.sweeper.n_trials=5", "trainer.max_epochs=1", f"hydra.sweeper.storage='{storage}'",
             f"hydra.sweep.dir={tmp_path / 'resumed'}"], cwd=tmp_path)  # fmt: skip
    assert len([t for t in optuna_study(storage).trials if t.state.name == "COMPLETE"]) == 5
    assert sum(p.is_dir() and p.name.isdigit() for p in (tmp_path / "resumed").iterdir()) == 1
    # a sweep that finds every trial taken launches nothing, and still ends well with its summary
    # (a sweep started late beside another failed so, in the parallel test suite)
    run_cli([*args[:-2], "hydra.sweeper.n_trials=5", f"hydra.sweeper.storage='{storage}'",
             f"hydra.sweep.dir={tmp_path / 'full'}"], cwd=tmp_path)  # fmt: skip
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["optimization_results.yaml"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.direction=sideways", "direction must be minimize or maximize"),
        ("hydra.sweeper.storage=study.db", "expected an RDB URL"),
        ("hydra.sweeper.n_trials=0", "n_trials and n_jobs must be at least 1"),
    ],
)
def test_bad_sweeper_settings_are_clear_errors(tmp_path, override, message):
    env = {**os.environ, "PYTHONPATH": PYTHON_PATH, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", *OPTUNA, override, f"hydra.sweep.dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0 and message in run.stderr + run.stdout


def test_wandb_sweep_file_drives_the_train_entry_point(make_cfg):
    sweep = yaml.safe_load((ROOT / "sweeps" / "wandb_sweep.yaml").read_text())
    assert sweep["metric"] == {"name": "val/nme_best", "goal": "minimize"}
    assert sweep["command"][:4] == ["${env}", "python", "-m", "smallnet_lit.train"]
    # every swept key is a real config key: compose with one value of each
    overrides = [a for a in sweep["command"][4:] if not a.startswith("${")]
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec.get("min")
        overrides.append(f"{key}={value}")
    cfg = make_cfg(overrides, tiny=False)
    assert cfg.logger.wandb._target_.endswith("WandbLogger")


@pytest.mark.slow
def test_wandb_logger_works_offline_with_pictures(tmp_path):
    run_cli(
        ["smallnet_lit.train", *TINY_CLI, "logger=wandb", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        env={"WANDB_API_KEY": ""},
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (tmp_path / "ced_test.png").is_file() and (tmp_path / "overlays_test.jpg").is_file()
    media = [p for p in runs[0].rglob("*") if "media" in p.parts and p.suffix in (".png", ".jpg")]
    assert len(media) >= 2, sorted(str(p) for p in runs[0].rglob("*"))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    """Validation metrics of one checkpoint: 2 gloo ranks must equal 1 process (the NME is
    a mean over all faces, gathered from the ranks, not a mean of per-rank means)."""
    base = [*TINY_CLI, "test=false"]
    run_cli(["smallnet_lit.train", *base, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'fit'}"], cwd=tmp_path)
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
    run_cli(["smallnet_lit.tools.ddp_validate", str(ckpt), "1", str(tmp_path / "one")], cwd=ROOT)
    run_cli(["smallnet_lit.tools.ddp_validate", str(ckpt), "2", str(tmp_path / "two")], cwd=ROOT)
    m1 = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads(f.read_text()) for f in sorted((tmp_path / "two").glob("rank*.json"))]
    assert m1["local_faces"] == 21
    assert sorted(r["local_faces"] for r in ranks) == [10, 11]  # every face once, none repeated
    m2 = ranks[0]
    assert m2["world_size"] == 2
    for key in ("val/nme", "val/fr", "val/auc"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-5), key


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    run_cli(
        [
            "smallnet_lit.train",
            "-m",
            "hydra/launcher=local",
            *TINY_CLI,
            "debug=fdr",
            "model.loss.beta=0.5,1.0",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    logs = list((tmp_path / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2
    assert all("finished:" in p.read_text() + p.with_name(p.name.replace(".out", ".err")).read_text() for p in logs)


@pytest.mark.slow
def test_killed_run_resumes_from_last_ckpt_to_the_same_metrics(tmp_path):
    args = [*TINY_CLI, "trainer.max_epochs=3", "test=false", "seed=7"]
    run_cli(["smallnet_lit.train", *args, f"hydra.run.dir={tmp_path / 'whole'}"], cwd=tmp_path)
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "smallnet_lit.train",
            *args,
            f"hydra.run.dir={tmp_path / 'cut'}",
            "+callbacks.kill._target_=tests.helpers.callbacks.KillAtStep",
            "+callbacks.kill.step=6",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": PYTHON_PATH,
            "OMP_NUM_THREADS": "1",
        },
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    run_cli(["smallnet_lit.train", *args, f"hydra.run.dir={tmp_path / 'cut'}", f"ckpt_path={last}"], cwd=tmp_path)

    def final(run: Path) -> dict:
        rows = [r for r in collect_local(run)]
        return rows[0].metrics

    whole, resumed = final(tmp_path / "whole"), final(tmp_path / "cut")
    for key in ("val/nme_best", "val/fr", "val/auc"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-5), key


def test_architecture_grid_stays_within_the_budget(make_cfg):
    """Every job of hparams_search=faces68_arch composes and fits <= 1.5 M parameters and
    <= 0.5 GMACs (the issue's budget for a shipped model)."""
    import itertools

    from smallnet_lit.model.net import count_macs, count_params
    from smallnet_lit.training.instantiate import model_from

    grid = yaml.safe_load((ROOT / "conf" / "hparams_search" / "faces68_arch.yaml").read_text())
    params = grid["hydra"]["sweeper"]["params"]
    choices = {
        k: [v.strip() for v in str(spec).replace("],[", "];[").split(";" if "[" in str(spec) else ",")]
        for k, spec in params.items()
    }
    for combo in itertools.product(*choices.values()):
        overrides = [f"{k}={v}" for k, v in zip(choices, combo, strict=True)]
        cfg = make_cfg(["+experiment=faces68", *overrides], tiny=False)
        net = model_from(cfg.model, cfg.data.scheme).net
        assert count_params(net) <= 1.5e6 and count_macs(net) <= 0.5e9, overrides
    assert len(list(itertools.product(*choices.values()))) == 24


def test_sweep_scripts_parse_and_skip_finished_runs(tmp_path):
    """Every sweep script is valid bash, and the shared `run` (sweeps/lib.sh) skips a run whose
    checkpoint and metrics are there, so a cut sweep resumes where it stopped."""
    for script in sorted((ROOT / "sweeps").glob("*.sh")):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
        for name in re.findall(r"\+experiment=\"?([\w/]+)", script.read_text()):  # recipes it names exist
            assert (ROOT / "conf" / "experiment" / f"{name}.yaml").is_file(), (script.name, name)
    done = tmp_path / "A"
    (done / "checkpoints").mkdir(parents=True)
    (done / "csv").mkdir()
    (done / "checkpoints" / "last.ckpt").touch()
    (done / "csv" / "metrics.csv").touch()
    out = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; OUT={tmp_path}; source {ROOT}/sweeps/lib.sh; run A +experiment=faces68"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip() == "skip A (done)"


def _sweep_trainings(script: str, tmp_path: Path, *args: str) -> dict[str, list[str]]:
    """Runs sweeps/SCRIPT with a stand-in `python` that only records its arguments: each training
    run's overrides by run name (hydra.* and trainer.* left out)."""
    shim = tmp_path / "bin"
    shim.mkdir(parents=True)
    (shim / "python").write_text('#!/bin/bash\nprintf "%s\\0" "$@" >> "$CALLS"; printf "\\n" >> "$CALLS"\n')
    (shim / "python").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls)}
    out = subprocess.run(
        ["bash", str(ROOT / "sweeps" / script), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and not out.stderr, out.stderr
    trains = {}
    for c in (line.strip("\0").split("\0") for line in calls.read_text().splitlines()):
        if c[:2] == ["-m", "smallnet_lit.train"]:
            run_dir = next(a for a in c if a.startswith("hydra.run.dir="))
            trains[Path(run_dir.split("=", 1)[1]).name] = [a for a in c[2:] if not a.startswith(("hydra.", "trainer."))]
    return trains


def test_turned_faces_sweep_gives_every_run_its_sources(tmp_path, make_cfg):
    """sweeps/turned_faces.sh, run with a stand-in `python` that only records its arguments:
    every training command composes, and each profiled run gets its profiled folders (a helper
    that failed inside $(...) once dropped them silently, and the runs trained without them)."""
    trains = _sweep_trainings("turned_faces.sh", tmp_path, str(tmp_path / "out"), str(tmp_path / "prof"))
    scratch = {"S0", "S3", "SF3", "T96", "V64", "T64", "T64NP", "T64P", "H96", "H64", "A64", "B64", "H80", "D128"}
    restarts = {
        "W0",
        "W3",
        "W10",
        "H96R",
        "H64R",
        "B64R",
        "Q64",
        "QH64",
        "QH64R",
        "QH96R",
        "QB64R",
        "H80R",
        "B64KD",
        "H80KD",
        "H80KD2",
        "QB64KD",
        "B64KD2",
        "H80KD3",
        "H80KD4",
        "QH80KD4",
        "H80RY",
        "H80RV",
        "H80RF",
        "H80KD5F",
        "B64KD3F",
        "B64KD3FT",
    }
    assert set(trains) == scratch | restarts
    for name, overrides in trains.items():
        sources = make_cfg(overrides, tiny=False).data.sources
        profiled = {k: Path(v.root) for k, v in sources.items() if k.startswith("profiled")}
        expected = {"W0": 0, "S0": 0, "W3": 2, "W10": 2, "H80RV": 5}.get(name, 3)
        assert len(profiled) == expected, (name, profiled)
        folder = "prof-nopitch" if name == "T64NP" else "prof"
        video = {k: profiled.pop(k) for k in ("profiled300wv", "profiledlfpwv") if k in profiled}
        assert all(root.parent == tmp_path / folder for root in profiled.values()), (name, profiled)
        assert all(root.parent == tmp_path / "prof-video" for root in video.values()), (name, video)
        weights = {k: v.weight for k, v in sources.items() if k.startswith("profiled")}
        if name == "H80RY":  # the profiled video frames five times as often
            assert weights == {"profiled300w": 0.3, "profiledlfpw": 0.3, "profiledytf": 0.5}
        if name == "H80RV":  # video-like studio faces beside the sharp ones
            assert weights["profiled300wv"] == weights["profiledlfpwv"] == 0.3 and weights["profiledytf"] == 0.1
    # Restarts and quantization-aware runs start from the sweep's run of the same network.
    starts = {
        "H96R": "H96",
        "H64R": "H64",
        "B64R": "B64",
        "Q64": "T64",
        "QH64": "H64",
        "QH64R": "H64R",
        "QH96R": "H96R",
        "QB64R": "B64R",
        "H80R": "H80",
        "B64KD": "B64",
        "H80KD": "H80",
        "H80KD2": "H80KD",
        "QB64KD": "B64KD",
        "B64KD2": "B64KD",
        "H80KD3": "H80KD2",
        "H80KD4": "H80KD3",
        "QH80KD4": "H80KD4",
        "H80RY": "H80",
        "H80RV": "H80",
        "H80RF": "H80",
        "H80KD5F": "H80KD4",
        "B64KD3F": "B64KD2",
        "B64KD3FT": "B64KD2",
    }
    for name, start in starts.items():
        cfg, origin = make_cfg(trains[name], tiny=False), make_cfg(trains[start], tiny=False)
        assert cfg.init_from == str(tmp_path / "out" / start / "checkpoints" / "last.ckpt")
        deployed = {"reparam": False, "norm": False} if name.startswith("Q") else {}
        assert not network_difference({**origin.model.net, **deployed}, {**cfg.model.net}), name
        assert (cfg.model.quant_aware is not None) == name.startswith("Q")
        # the taught restarts: by the shipped default, with the head's features
        taught = cfg.model.distill and (cfg.model.distill.teacher, cfg.model.distill.features)
        assert taught == (("smallnet_300w", 1.0) if "KD" in name and not name.startswith("Q") else None), name
        assert bool(cfg.model.distill and cfg.model.distill.get("flip")) == (name == "B64KD3FT"), name
    # Every run of this sweep trained before the flip offset, as recorded, but those named for it
    with_offset = {"H80RF", "H80KD5F", "B64KD3F", "B64KD3FT"}
    for name, overrides in trains.items():
        sources = make_cfg(overrides, tiny=False).data.sources
        offsets = {k: sources[k].flip_offset for k in ("ibug300w", "lfpw", "ytf68")}
        assert set(offsets.values()) == ({1.0} if name in with_offset else {0}), (name, offsets)
    # D128: the shipped default's network from scratch, untaught (the teacher saw the held-out turned faces)
    d128 = make_cfg(trains["D128"], tiny=False).model
    net = (d128.net.input_size, d128.net.widths, d128.net.depths, d128.net.reparam)
    assert net == (128, [32, 64, 128, 224], [3, 4, 4, 2], False) and d128.distill is None


def test_small_again_sweep_restarts_the_turned_sweeps_nets_on_the_default_split(tmp_path, make_cfg):
    """sweeps/small_again.sh: each run restarts its turned-sweep counterpart's network, on the
    default split (turned faces trained on), without profiled copies, taught by the shipped
    default with features, with the flip offset."""
    turned = _sweep_trainings("turned_faces.sh", tmp_path / "t", str(tmp_path / "out"), str(tmp_path / "prof"))
    trains = _sweep_trainings("small_again.sh", tmp_path / "s", str(tmp_path / "again"), str(tmp_path / "out"))
    starts = {"H80KDD": ("out", "H80KD5F"), "B64KDD": ("out", "B64KD3F"), "H80KDD2": ("again", "H80KDD")}
    assert set(trains) == set(starts)
    for name, (folder, start) in starts.items():
        cfg = make_cfg(trains[name], tiny=False)
        origin = make_cfg((turned if folder == "out" else trains)[start], tiny=False)
        assert cfg.init_from == str(tmp_path / folder / start / "checkpoints" / "last.ckpt"), name
        assert not network_difference({**origin.model.net}, {**cfg.model.net}), name
        assert cfg.data.turned_to_val is None, name
        assert set(cfg.data.sources) == {"ibug300w", "lfpw", "ytf68"}, name
        assert {s.flip_offset for s in cfg.data.sources.values()} == {1.0}, name
        assert (cfg.model.distill.teacher, cfg.model.distill.features) == ("smallnet_300w", 1.0), name
        assert not cfg.model.distill.get("flip"), name


def test_small_from_shipped_sweep_reads_the_shipped_fast_net_at_smaller_inputs(tmp_path, make_cfg):
    """sweeps/small_from_shipped.sh: F80 / F64 are the shipped fast model's very network (the
    weights fit) read at 80 / 64 px with the head grid at stride 8, F96 at 96 px less a conv, from
    its weights; D80 the shipped default's net at 80 px less five convs, D64 / D64C the whole of it at
    64 px (D64C less one conv, on a finer grid), from its weights; all on the
    default split, taught by the shipped default with features, with the flip offset, each within
    the issue's GMACs; each restart (F96L, F64L, F96L2, ...) continues the run before it with its very
    network (F96LR: with RepVGG branches grown beside it), data and teacher (F64TA: the shipped fast
    model, a teacher assistant)."""
    out = tmp_path / "out"
    trains = _sweep_trainings("small_from_shipped.sh", tmp_path, str(out))
    assert set(trains) == {
        "F80",
        "F96",
        "F64",
        "D80",
        "F96L",
        "F64L",
        "F96L2",
        "F64L2",
        "F64L3",
        "F96L3",
        "F96L4",
        "F96LR",
        "F64L4",
        "F64TA",
        "F96L5",
        "F64L5",
        "D64",
        "D64C",
        "QF64",
        "S96",
        "L96",
        "S64",
    }
    theirs = dict(load_model("smallnet_300w").hparams.net)
    # the shipped default's net: at 80 px cut by five convs, at 64 px whole or less one conv
    for name, size, depths in (("D80", 80, [1, 1, 4, 2]), ("D64", 64, [3, 4, 4, 2]), ("D64C", 64, [2, 4, 4, 2])):
        default = make_cfg(trains[name], tiny=False)
        assert default.init_from == "smallnet_300w" and list(default.model.net.depths) == depths, name
        assert default.model.net.input_size == size and default.model.distill.teacher == "smallnet_300w", name
        ours = {**default.model.net, "num_points": 68}
        assert not network_difference(ours, theirs, ignore=(*SHAPE_FREE_KEYS, "depths")), name
        assert count_macs(model_from(default.model, "ibug68").net) <= 0.10e9, name
    assert make_cfg(trains["D64"], tiny=False).model.net.head_stride == 16  # the default's own grid stride
    # QF64: the shipped tiny model, BatchNorm folded, quantization-aware; S96 / L96 from scratch
    qat = make_cfg(trains["QF64"], tiny=False)
    assert qat.init_from == "smallnet_300w_tiny" and not qat.model.net.norm and qat.model.quant_aware.weight_bits == 7
    assert (qat.model.net.input_size, qat.model.net.head_stride) == (64, 8)
    scratch = {name: make_cfg(trains[name], tiny=False) for name in ("S96", "L96", "S64")}
    nets = {name: model_from(cfg.model, "ibug68").net for name, cfg in scratch.items()}
    for name, cfg in scratch.items():
        assert cfg.init_from is None and cfg.trainer.max_epochs == 120, name
        assert (cfg.model.distill.teacher, cfg.model.distill.features) == ("smallnet_300w", 1.0), name
        assert {s.flip_offset for s in cfg.data.sources.values()} == {1.0}, name
        assert count_macs(nets[name]) <= (0.05e9 if name == "S64" else 0.10e9), name
        assert cfg.model.net.input_size == int(name[1:]) and cfg.model.net.head_stride == 8, name
    assert scratch["S96"].data == scratch["L96"].data == scratch["S64"].data
    for name, chain in (("S96", "F96"), ("S64", "F64")):  # the shipped small / tiny model's network, from scratch
        assert scratch[name].model.net == make_cfg(trains[chain], tiny=False).model.net, name
    assert count_params(nets["L96"]) > 1.6 * count_params(nets["S96"])  # the late stages' capacity
    shipped = load_model("smallnet_300w_fast").hparams.net
    for name, size in (("F80", 80), ("F96", 96), ("F64", 64)):
        cfg = make_cfg(trains[name], tiny=False)
        assert cfg.init_from == "smallnet_300w_fast", name
        ours = {**cfg.model.net, "num_points": 68}
        assert not network_difference(ours, dict(shipped), ignore=(*SHAPE_FREE_KEYS, "depths")), name
        assert list(cfg.model.net.depths) == ([1, 3, 4, 2] if size == 96 else list(shipped["depths"])), name
        assert (cfg.model.net.input_size, cfg.model.net.head_stride) == (size, 8), name
        assert count_macs(model_from(cfg.model, "ibug68").net) <= (0.05e9 if size == 64 else 0.10e9), name
        assert cfg.data.turned_to_val is None and set(cfg.data.sources) == {"ibug300w", "lfpw", "ytf68"}, name
        assert {s.flip_offset for s in cfg.data.sources.values()} == {1.0}, name
        assert (cfg.model.distill.teacher, cfg.model.distill.features) == ("smallnet_300w", 1.0), name
    restarts = {"F96L": "F96", "F64L": "F64", "F96L2": "F96L", "F64L2": "F64L", "F64L3": "F64L2", "F96L3": "F96L2"}
    restarts |= {"F96L4": "F96L3", "F96LR": "F96L3", "F64L4": "F64L3", "F64TA": "F64L3"}
    restarts |= {"F96L5": "F96L4", "F64L5": "F64L4"}
    for name, before in restarts.items():
        first, again = make_cfg(trains[before], tiny=False), make_cfg(trains[name], tiny=False)
        assert again.init_from == str(out / before / "checkpoints" / "last.ckpt"), name
        grown = {"reparam": True} if name.endswith("R") else {}  # RepVGG branches beside the same convs
        assert again.model.net == {**first.model.net, **grown} and again.data == first.data, name
        assistant = {"teacher": "smallnet_300w_fast"} if name.endswith("TA") else {}  # F64's own net at 128 px
        assert again.model.distill == {**first.model.distill, **assistant}, name
        assert again.model.optimizer.lr == 0.0005, name


def test_compare_ignores_half_written_rows_and_marks_unfinished_runs(tmp_path, capsys):
    header = "epoch,step,train/loss,val/nme,val/fr,val/auc\n"
    done = tmp_path / "sweep" / "0"
    (done / "csv").mkdir(parents=True)
    (done / "csv" / "metrics.csv").write_text(header + "0,10,1.0,0.0900,0.1,0.2\n1,20,0.9,0.0700,0.0,0.3\n")
    (done / "train.log").write_text("... best checkpoint: x.ckpt\n")
    writing = tmp_path / "sweep" / "1"
    (writing / "csv").mkdir(parents=True)
    # the last row is being written: its val/nme 0.0612 is cut to 0
    (writing / "csv" / "metrics.csv").write_text(header + "0,10,1.0,0.0800,0.0,0.2\n1,20,0.9,0")
    crashed = tmp_path / "sweep" / "2"
    (crashed / "csv").mkdir(parents=True)
    (crashed / "csv" / "metrics.csv").write_text(header + "0,10,1.0,0.0850,0.0,0.2\n1,20,0.9,0.08,0.0\n")
    (crashed / "train.log").write_text("Error executing job with overrides: []\nTraceback ...\n")
    evaluation = tmp_path / "sweep" / "eval"  # an eval run dir: no epochs, not a training run
    (evaluation / "csv").mkdir(parents=True)
    (evaluation / "csv" / "metrics.csv").write_text("test/nme,test/fr\n0.05,0.0\n")
    runs = {Path(r.name).name: r for r in collect_local(tmp_path / "sweep")}
    assert set(runs) == {"0", "1", "2"}
    assert runs["1"].best == pytest.approx(0.08) and runs["1"].status == "running"
    assert runs["0"].status == "finished" and runs["2"].status == "failed"
    assert runs["2"].best == pytest.approx(0.085)  # its short row is left out
    assert compare_main([str(tmp_path / "sweep")]) == 0
    assert "running" in capsys.readouterr().out


def test_efficient_grid_stays_at_pfld_ghostones_cost(make_cfg):
    """Every job of hparams_search=faces68_efficient composes on faces68_rep and stays within
    0.10 GMACs (the default's budget); at least one fits the fast model's 0.05."""
    import itertools

    from smallnet_lit.model.net import count_macs
    from smallnet_lit.training.instantiate import model_from

    grid = yaml.safe_load((ROOT / "conf" / "hparams_search" / "faces68_efficient.yaml").read_text())
    params = grid["hydra"]["sweeper"]["params"]
    choices = {
        k: [v.strip() for v in str(spec).replace("],[", "];[").split(";" if "[" in str(spec) else ",")]
        for k, spec in params.items()
    }
    costs = []
    for combo in itertools.product(*choices.values()):
        overrides = [f"{k}={v}" for k, v in zip(choices, combo, strict=True)]
        cfg = make_cfg(["+experiment=faces68_rep", *overrides], tiny=False)
        costs.append(count_macs(model_from(cfg.model, cfg.data.scheme).net))
        assert costs[-1] <= 0.10e9, overrides
    assert len(costs) == 24 and min(costs) <= 0.05e9


@pytest.mark.parametrize(("experiment", "budget"), [("faces68_small", 0.10e9), ("faces68_small_fast", 0.05e9)])
def test_small_input_candidates_fit_their_budgets(make_cfg, experiment, budget):
    """The small-input candidates (issue "Small again": <= 0.10 and <= 0.05 GMACs) stay within
    their budgets, train from scratch (no teacher) on the turned-face split with all three
    profiled sources, and deploy as a plain stack."""
    from smallnet_lit.model.net import count_macs
    from smallnet_lit.training.instantiate import model_from

    cfg = make_cfg([f"+experiment={experiment}"], tiny=False)
    net = model_from(cfg.model, cfg.data.scheme).net
    assert count_macs(net) <= budget
    assert cfg.model.distill is None and cfg.data.turned_to_val == 30
    profiled = {name: s for name, s in cfg.data.sources.items() if name.startswith("profiled")}
    assert set(profiled) == {"profiled300w", "profiledlfpw", "profiledytf"}
    assert all(s.train_only for s in profiled.values())
    assert not net.deployed().reparam
