"""hparams_search=optuna: the project's Hydra sweeper over Optuna's public API (docs/scaling.md).

Each round asks the study for `n_jobs` trials, has Hydra's launcher run them as jobs whose overrides are the trials'
parameters (the job's number is the trial's), and tells the study what each job returned (`optimized_metric`), or
FAIL when the job raised. The study lives in an RDB storage (SQLite under outputs/), so that the same command run
again continues it: `n_trials` counts the study's completed trials, and the sampler is seeded past the earlier draws
so that it does not replay them. While a round's jobs run, this process records their trials' heartbeats (what
Study.optimize does for its own objective): a trial whose search died goes stale, and the next search on the storage
marks it FAIL and runs its parameters again (RetryHeartbeatStaleTrialCallback). Several searches may share a study:
each asks only for the trials that the others are not running. Hydra builds sweepers only from the hydra_plugins
package; hydra_plugins/ddpm_optuna_sweeper names this class there.
"""

import contextlib
import itertools
import json
import logging
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ddpm.errors import ConfigError

log = logging.getLogger(__name__)


def distribution(override: Override) -> Any:
    """The Optuna distribution of a searched parameter, in the syntax of Hydra's sweeps: `choice(a, b)` and
    `range(...)` are categorical, `interval(lo, hi)` uniform over floats (`int(interval(lo, hi))` over integers),
    `tag(log, interval(lo, hi))` log-uniform. None for a fixed value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return None
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        on_log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=on_log)
        return FloatDistribution(sweep.start, sweep.end, log=on_log)
    return CategoricalDistribution(list(override.sweep_iterator()))


def parse_space(arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The searched parameters' distributions and the fixed `key=value` overrides; a key given twice (in
    `hydra.sweeper.params`, then on the command line) takes its last value."""
    overrides = {o.get_key_element(): o for o in OverridesParser.create().parse_overrides(arguments)}
    space = {key: distribution(o) for key, o in overrides.items()}
    fixed = [f"{key}={o.get_value_element_as_str()}" for key, o in overrides.items() if space[key] is None]
    return {key: d for key, d in space.items() if d is not None}, fixed


def override_value(value: Any) -> str:
    """`value` in Hydra's override syntax: as it prints, unless that reads as something else (`b,c` a sweep, `null`
    None, `x=(1)` an error): then quoted."""
    text = str(value)
    if isinstance(value, str):
        try:
            same = OverridesParser.create().parse_override(f"key={text}").value() == value
        except HydraException:
            same = False
        if not same:
            return "'" + text.replace("'", "\\'") + "'"
    return text


def search_space(config: DictConfig) -> str:
    """What a study's trials mean: the searched parameters, the metric and its direction."""
    sweeper = config.hydra.sweeper
    return json.dumps({
        "params": OmegaConf.to_container(sweeper.params, resolve=True),
        "direction": directions(sweeper.direction),
        "optimized_metric": config.get("optimized_metric"),
    }, sort_keys=True)


def directions(direction: Any) -> list[str]:
    return [str(d) for d in direction] if OmegaConf.is_list(direction) else [str(direction)]


def absolute_sqlite(url: str) -> str:
    """A SQLite URL with an absolute path (what optuna-dashboard is given from anywhere), its folder made."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return url
    database = Path(url.removeprefix("sqlite:///")).expanduser().resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database}"


@contextlib.contextmanager
def heartbeats(storage, trial_ids: list[int]):
    """Record the trials' heartbeats now (a search killed as its jobs start leaves stale trials, not running ones)
    and every `heartbeat_interval` seconds until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        for trial_id in trial_ids:
            storage.record_heartbeat(trial_id)

    def beats() -> None:
        while not stop.wait(storage.get_heartbeat_interval()):
            beat()

    beat()
    thread = threading.Thread(target=beats, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def heartbeats_outside_optimize():
    """Optuna warns that heartbeats are meant for Study.optimize (this sweeper records them itself, see
    `heartbeats`), and that the stale-trial helpers are experimental."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


class OptunaSweeper(Sweeper):
    """conf/hydra/sweeper/optuna.yaml: its keys are the arguments."""

    def __init__(self, storage: str, study_name: str, direction: Any, n_trials: int, n_jobs: int,
                 sampler: Callable[..., Any], heartbeat_interval: int, max_retry: int | None,
                 params: DictConfig | None = None):
        self.storage, self.study_name, self.direction = storage, study_name, direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler = sampler  # a partial (`_partial_: true`), so that its seed can be moved on
        self.heartbeat_interval, self.max_retry = heartbeat_interval, max_retry
        self.params = params or {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def seeded_sampler(self, drawn: int):
        seed = self.sampler.keywords.get("seed")
        return self.sampler() if seed is None else self.sampler(seed=seed + drawn)

    def open_study(self):
        """The study, created or continued; one that holds a search over another space is refused before this
        search writes anything."""
        import optuna

        url, name, space = absolute_sqlite(str(self.storage)), str(self.study_name), search_space(self.config)
        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=self.heartbeat_interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(self.max_retry),
            )
        except RuntimeError as e:  # a study of the Optuna 2 sweeper; Optuna says what to run, in a traceback
            if "optuna storage upgrade" not in str(e):
                raise
            raise ConfigError(f"hydra.sweeper.storage={url} holds the tables of an older Optuna: upgrade them with "
                              f"`optuna storage upgrade --storage {url}` (keep a copy of the file)") from e
        drawn = 0
        if name in optuna.get_all_study_names(storage):
            stored = optuna.load_study(study_name=name, storage=storage)
            if stored.user_attrs.get("search_space", space) != space:
                raise ConfigError(
                    f"hydra.sweeper.study_name={name} in {url} holds a search over another space "
                    f"({stored.user_attrs['search_space']}): choose another hydra.sweeper.study_name or delete the "
                    "study"
                )
            drawn = len(stored.trials)
        study = optuna.create_study(study_name=name, storage=storage, sampler=self.seeded_sampler(drawn),
                                    directions=directions(self.direction), load_if_exists=True)
        study.set_user_attr("search_space", space)
        log.info(f"Optuna study {name}: {drawn} trials so far, {self.n_trials} to complete; "
                 f"to watch it: optuna-dashboard {url}")
        return study, storage

    def sweep(self, arguments: list[str]) -> list:
        # Hydra imports this module whenever it lists its plugins: runtime (torch, Lightning) only when a search runs
        from ddpm.cli.runtime import exit_on_user_error

        return exit_on_user_error(self.search)(arguments)

    def search(self, arguments: list[str]) -> list:
        import optuna
        from optuna.trial import TrialState

        space, fixed = parse_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        with heartbeats_outside_optimize():
            study, storage = self.open_study()
            complete = len(study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]))
            failures_allowed, failed, returns = max(self.n_trials - complete, 0), 0, []
            while True:
                optuna.storages.fail_stale_trials(study)
                states = [t.state for t in study.get_trials(deepcopy=False)]
                missing = self.n_trials - states.count(TrialState.COMPLETE) - states.count(TrialState.RUNNING)
                if missing <= 0 or failed >= failures_allowed:
                    break
                trials = [study.ask(space) for _ in range(min(self.n_jobs, missing))]
                study_id = storage.get_study_id_from_name(study.study_name)
                ids = [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials]
                with heartbeats(storage, ids):
                    # The launcher numbers a batch's jobs on from its first: one batch per run of consecutive trial
                    # numbers, so that each job's number (and folder) is its trial's
                    for _, run in itertools.groupby(enumerate(trials), key=lambda it: it[1].number - it[0]):
                        batch = [trial for _, trial in run]
                        failed += self.run_batch(study, storage, batch, fixed, returns)
        self.save_results(study)
        if failed >= failures_allowed > 0:
            log.error(f"{failed} trial(s) failed in this search: it stops (the same command runs the missing ones)")
            sys.exit(1)
        return returns

    def run_batch(self, study, storage, trials: list, fixed: list[str], returns: list) -> int:
        """Run the trials' jobs and tell the study their values; the number of trials that failed."""
        from optuna.trial import TrialState

        jobs = [[*(f"{k}={override_value(v)}" for k, v in t.params.items()), *fixed] for t in trials]
        try:
            results = self.launcher.launch(jobs, initial_job_idx=trials[0].number)
        except (Exception, KeyboardInterrupt, SystemExit) as e:
            # A job's process died (its launcher lost it), Ctrl-C, or a signal that stopped a job (the process exits
            # with 128 + it): the trials' parameters are run again, by this search or by the same command run again.
            cause = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            log.warning(f"Trials {[t.number for t in trials]} lost their jobs ({cause}); they will be run again")
            retry = storage.get_heartbeat_stale_trial_callback()
            for trial in trials:
                retry(study, study.tell(trial, state=TrialState.FAIL))
            if not isinstance(e, Exception):
                raise
            return len(trials)
        returns.append(results)
        failed = 0
        for trial, result in zip(trials, results):
            try:
                value = result.return_value  # raises the job's exception
                values = [float(v) for v in value] if len(study.directions) > 1 else [float(value)]
            except Exception as e:
                log.warning(f"Trial {trial.number} failed: {e!r}")
                told = study.tell(trial, state=TrialState.FAIL)
            else:
                told = study.tell(trial, values)  # a NaN value is told as FAIL
                log.info(f"Trial {trial.number}: {told.state.name} {values}")
            failed += told.state == TrialState.FAIL
        return failed

    def save_results(self, study) -> None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]):
            log.warning(f"No trial of study {study.study_name} has completed")
            return
        if len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info(f"Best parameters: {best.params}; best value: {best.value} (trial {best.number})")
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info(f"{len(results['solutions'])} Pareto-optimal trials")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
