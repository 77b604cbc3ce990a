"""Hydra sweeper plugin `hydra/sweeper=smallnet_optuna`: Optuna >= 4 with pruning and studies
shared across processes and machines. The work is in smallnet_lit.training.optuna_sweep; this
module only registers the config (Hydra imports every module under hydra_plugins)."""

# No `from __future__ import annotations`: Hydra loads plugin modules without registering
# them in sys.modules, where dataclasses look string annotations up.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class SmallnetOptunaSweeperConf:
    _target_: str = "hydra_plugins.smallnet_optuna_sweeper.SmallnetOptunaSweeper"
    # An Optuna sampler ({_target_: optuna.samplers.TPESampler, seed: ...}), instantiated by Hydra.
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})
    # An Optuna pruner ({_target_: optuna.pruners.MedianPruner, ...}) or null: no pruning.
    pruner: Any = None
    direction: str = "minimize"
    # null (in memory, this process), an RDB URL (sqlite:///study.db, postgresql://...) or
    # journal:///path/on/a/shared/disk.log: several sweeps with one storage share the study.
    storage: Any = None
    study_name: Any = None
    n_trials: int = 20  # trials of the study in all (its finished and running trials count)
    n_jobs: int = 1  # trials asked for and launched together
    max_failure_rate: float = 0.0
    params: Any = None  # the search space: KEY: choice(...) / interval(...) / range(...) / tag(log, ...)
    metric: str = "val/nme"  # what each epoch reports to the pruner


ConfigStore.instance().store(
    group="hydra/sweeper", name="smallnet_optuna", node=SmallnetOptunaSweeperConf, provider="smallnet_lit"
)


class SmallnetOptunaSweeper(Sweeper):
    def __init__(self, **kwargs: Any) -> None:
        from smallnet_lit.training.optuna_sweep import OptunaSweep

        self.sweeper = OptunaSweep(**kwargs)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
