"""Optuna sweeps (the `hydra/sweeper=smallnet_optuna` plugin) on current Optuna (>= 4):

- the search space is Hydra's override grammar in `hydra.sweeper.params` (choice, range,
  interval, tag(log, interval)); other overrides are passed to every trial;
- pruning: each trial reports `hydra.sweeper.metric` (val/nme) every epoch to its study
  (`TrialPruning`, added to the trainer by train.py), and stops when `hydra.sweeper.pruner`
  says so; the trial is then PRUNED in the study;
- a study shared across processes and machines: with `hydra.sweeper.storage` set (an RDB URL or
  `journal:///path/on/a/shared/disk.log`) several sweeps started at once draw their trials from
  one study; `n_trials` is the study's total (its finished and running trials count), so they
  stop together and never run more; parameters equal to a finished trial's are not trained
  again (its value is reused); a sweep started again on a storage resumes its study, and a
  trial left RUNNING by a dead process of this machine is marked FAIL and trained anew.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from smallnet_lit.data.cache import pid_alive

log = logging.getLogger(__name__)

# Studies of this process by name: a trial run in this process (Hydra's basic launcher) reports
# to the very study object, which in-memory storage needs.
ACTIVE_STUDIES: dict[str, optuna.Study] = {}
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def make_storage(url: str | None):
    """None (in memory), an RDB URL (Optuna opens it), or journal:///path: a journal file."""
    if url is None:
        return None
    url = str(url)
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:") :].removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(
            f"hydra.sweeper.storage={url!r}: expected an RDB URL (sqlite:///study.db, postgresql://...) "
            "or journal:///path/to/study.log (a file on a disk every sweep can reach)"
        )
    return url


def search_space(
    params: dict[str, Any] | None, arguments: list[str]
) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Optuna distributions of the sweep overrides, and the fixed overrides."""
    overrides = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    space, fixed = {}, {}
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if not o.is_sweep_override():
            fixed[key] = o.get_value_element_as_str()
        elif o.is_choice_sweep() or (o.is_range_sweep() and o.value().shuffle):
            space[key] = CategoricalDistribution(list(o.sweep_iterator(transformer=Transformer.encode)))
        elif o.is_range_sweep():
            r = o.value()
            if any(isinstance(v, float) for v in (r.start, r.stop, r.step)):
                space[key] = CategoricalDistribution(list(o.sweep_iterator(transformer=Transformer.encode)))
            else:  # range(a, b, s) excludes b
                space[key] = IntDistribution(int(r.start), int(r.stop) - int(r.step), step=int(r.step))
        elif o.is_interval_sweep():
            iv, is_log = o.value(), "log" in o.value().tags
            if isinstance(iv.start, int) and isinstance(iv.end, int):
                space[key] = IntDistribution(iv.start, iv.end, log=is_log)
            else:
                space[key] = FloatDistribution(float(iv.start), float(iv.end), log=is_log)
        else:
            raise ValueError(f"hydra.sweeper.params: {o.input_line} is not a sweep Optuna can sample")
    for key in fixed:
        space.pop(key, None)
    return space, fixed


class OptunaSweep:
    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: dict | None,
        metric: str = "val/nme",
    ) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction must be minimize or maximize, got {direction!r}")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials and n_jobs must be at least 1, got {n_trials} and {n_jobs}")
        if not 0 <= max_failure_rate <= 1:
            raise ValueError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {max_failure_rate}")
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ValueError(
                f"hydra.sweeper.sampler must be an Optuna sampler ({{_target_: optuna.samplers...}}), got {sampler!r}"
            )
        if pruner is not None and not isinstance(pruner, optuna.pruners.BasePruner):
            raise ValueError(
                f"hydra.sweeper.pruner must be an Optuna pruner ({{_target_: optuna.pruners...}}), got {pruner!r}"
            )
        self.sampler, self.pruner, self.direction = sampler, pruner, direction
        self.storage_url, self.storage = (None if storage is None else str(storage)), make_storage(storage)
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.params, self.metric = max_failure_rate, params, metric

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def study(self) -> optuna.Study:
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner or optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        ACTIVE_STUDIES[study.study_name] = study
        return study

    def sweep(self, arguments: list[str]) -> None:
        space, fixed = search_space(OmegaConf.to_container(self.params) if self.params else None, arguments)
        if not space:
            raise ValueError(
                "hydra.sweeper.params holds no sweep (choice(...), interval(...), range(...)): nothing to search"
            )
        if self.storage is not None and hasattr(self.sampler, "reseed_rng"):
            # Sweeps sharing a study would otherwise propose the same seeded parameters.
            self.sampler.reseed_rng()
        study = self.study()
        fail_dead_trials(study)
        log.info(
            "Optuna %s: study %r (%s), %s, %s, %d trials in all",
            optuna.__version__, study.study_name, self.storage_url or "in memory", type(study.sampler).__name__,
            type(study.pruner).__name__, self.n_trials,
        )  # fmt: skip
        job_idx = 0
        while (budget := self.n_trials - len(study.get_trials(deepcopy=False, states=BUDGET_STATES))) > 0:
            trials = [t for t in (self.ask(study, space) for _ in range(min(self.n_jobs, budget))) if t is not None]
            if not trials:
                continue
            returns = self.launcher.launch([self.overrides(study, t, fixed) for t in trials], initial_job_idx=job_idx)
            job_idx += len(returns)
            failures = [ret for trial, ret in zip(trials, returns, strict=True) if not self.tell(study, trial, ret)]
            if failures and len(failures) / len(returns) > self.max_failure_rate:
                failures[0].return_value  # noqa: B018 - raises the job's own error, with its traceback
                raise RuntimeError(
                    f"{len(failures)} of {len(returns)} trials gave no value (hydra.sweeper.max_failure_rate="
                    f"{self.max_failure_rate}): is optimized_metric logged?"
                )
        self.write_results(study)

    def ask(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> optuna.Trial | None:
        """A new trial, or None when it fell outside the budget (another sweep on the same study
        took the last one) or repeats a finished trial (whose value it takes, without training)."""
        trial = study.ask(space)
        failed_before = sum(
            1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number < trial.number
        )
        if trial.number >= self.n_trials + failed_before:
            trial.set_user_attr("skipped", "over n_trials: another sweep of this study took the last trial")
            study.tell(trial, state=TrialState.FAIL)
            return None
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if done.params == trial.params:
                trial.set_user_attr("duplicate_of", done.number)
                study.tell(trial, done.value)
                log.info("trial %d repeats trial %d's parameters: its value is reused", trial.number, done.number)
                return None
        return trial

    def overrides(self, study: optuna.Study, trial: optuna.Trial, fixed: dict[str, str]) -> tuple[str, ...]:
        info = {
            "study_name": study.study_name,
            "number": trial.number,
            "storage": self.storage_url,
            "metric": self.metric,
        }
        quoted = ",".join(f"{k}:{'null' if v is None else repr(str(v))}" for k, v in info.items())
        return (*(f"{k}={v}" for k, v in {**trial.params, **fixed}.items()), f"+optuna_trial={{{quoted}}}")

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret) -> bool:
        """Record a finished job in the study; False when it failed."""
        if ret.status != JobStatus.COMPLETED:
            log.warning("trial %d failed: %s", trial.number, ret._return_value)
            study.tell(trial, state=TrialState.FAIL)
            return False
        try:
            value = float(ret.return_value)
        except (TypeError, ValueError):
            log.warning("trial %d returned %r, not a number (optimized_metric set?)", trial.number, ret.return_value)
            study.tell(trial, state=TrialState.FAIL)
            return False
        if "pruned_at_epoch" in study._storage.get_trial_user_attrs(trial._trial_id):
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
        return True

    def write_results(self, study: optuna.Study) -> None:
        states = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
        result: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "trials": states}
        if states["COMPLETE"]:
            best = study.best_trial
            result.update(best_params=best.params, best_value=best.value, best_trial=best.number)
            log.info("best trial %d: %s = %.6f, %s", best.number, self.metric, best.value, best.params)
        # A sweep that launched no job (others on the study took every trial) has no folder yet.
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(result), sweep_dir / "optimization_results.yaml")


def fail_dead_trials(study: optuna.Study) -> None:
    """Trials left RUNNING by a sweep process of this machine that is gone (a killed sweep):
    FAIL, so that a resumed sweep trains them anew. Other machines' trials are left alone."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") == host and isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid):
            study._storage.set_trial_user_attr(t._trial_id, "failed", f"its sweep (pid {pid}) ended while it ran")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            log.info("trial %d was left running by a sweep that ended: marked FAIL", t.number)


class TrialPruning(L.Callback):
    """Reports the trial's metric after every validation epoch and stops training when the
    study's pruner says so (the trial is then PRUNED: `OptunaSweep.tell`)."""

    def __init__(self, study_name: str, number: int, storage: str | None = None, metric: str = "val/nme") -> None:
        self.study = ACTIVE_STUDIES.get(study_name)
        if self.study is None:
            if storage is None:
                raise ValueError(
                    "this trial runs in another process than its sweep: pruning needs hydra.sweeper.storage "
                    "(an RDB URL or journal:///path) so the trial can reach its study"
                )
            self.study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, int(number))
        self.trial = optuna.Trial(self.study, trial_id)
        self.metric = metric

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # (not on_validation_epoch_end: callbacks run before the module's hook that logs the metric)
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            log.info("trial %d pruned after epoch %d (%s)", self.trial.number, epoch, type(self.study.pruner).__name__)
            trainer.should_stop = True
