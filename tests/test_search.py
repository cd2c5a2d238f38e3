"""The project's Optuna sweeper (ddpm/cli/optuna_sweeper.py): the search space read from Hydra's sweep syntax, and
searches over tests/search_app.py (no training) that continue their study, survive a failing trial, retry the trial
of a killed search or of a job whose process died, and share one study between two processes."""

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import CONF, ROOT, run_script
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ddpm.cli.app import check_group_choices
from ddpm.cli.optuna_sweeper import override_value, parse_space
from ddpm.errors import ConfigError

APP = "tests/search_app.py"


def test_the_search_space_in_hydra_sweep_syntax():
    space, fixed = parse_space([
        "module.lr=tag(log, interval(3e-4, 6e-3))", "a=int(interval(1, 10))", "b=interval(1, 10)",
        "callbacks.ema.decay=choice(0.99, 0.995)", "c=range(0, 6, 2)", "d=choice(a, 'b,c', 'null', true)",
        "e=choice(1,2)", "model=tiny", "e=3",  # the command line comes after hydra.sweeper.params: its value wins
    ])
    assert space == {
        "module.lr": FloatDistribution(3e-4, 6e-3, log=True),
        "a": IntDistribution(1, 10),
        "b": FloatDistribution(1.0, 10.0),
        "callbacks.ema.decay": CategoricalDistribution([0.99, 0.995]),
        "c": CategoricalDistribution([0, 2, 4]),
        "d": CategoricalDistribution(["a", "b,c", "null", True]),
    }
    assert sorted(fixed) == ["e=3", "model=tiny"]


def test_a_trial_value_reads_back_as_itself_in_the_job_override():
    parser = OverridesParser.create()
    for value in ["linear", "b c", "b,c", "null", "True", "x=(1)", "it's", True, 0.995, 3e-4, 64]:
        text = override_value(value)
        assert parser.parse_override(f"key={text}").value() == value, text
    assert override_value("linear") == "linear" and override_value(0.995) == "0.995"  # unquoted where it can


def test_a_missing_optuna_names_its_extra(monkeypatch):
    monkeypatch.setattr("ddpm.cli.app.installed", lambda module: module != "optuna")
    with pytest.raises(ConfigError, match=r"^hparams_search=optuna needs optuna: pip install -e '\.\[optuna\]'$"):
        check_group_choices(["hparams_search=optuna"])


@pytest.fixture
def app(tmp_path):
    """search.yaml for tests/search_app.py, on the project's conf/hydra/sweeper/optuna.yaml, with a 1 s heartbeat."""
    (tmp_path / "search.yaml").write_text(f"""
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0.0
n: 0
seconds: 0
kill_once: null
raise_once: null
hydra:
  searchpath: [file://{CONF}]
  sweep:
    subdir: ${{hydra.job.num}}
  sweeper:
    storage: sqlite:///{tmp_path}/search.db
    study_name: toy
    heartbeat_interval: 1
    sampler:
      seed: 0
    params:
      x: interval(-2.0, 2.0)
      n: choice(0, 1, 2)
""")
    return tmp_path


def search(app: Path, sweep: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_script(APP, f"--config-dir={app}", "-m", f"hydra.sweep.dir={app / sweep}", *args, check=check)


def trials(app: Path) -> list:
    return optuna.load_study(study_name="toy", storage=f"sqlite:///{app}/search.db").get_trials()


def jobs(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_a_search_continues_its_study_with_more_trials(app):
    proc = search(app, "first", "hydra.sweeper.n_trials=3")
    assert f"optuna-dashboard sqlite:///{app}/search.db" in proc.stdout + proc.stderr  # the URL to watch it
    search(app, "again", "hydra.sweeper.n_trials=5")
    study = trials(app)
    assert [t.state for t in study] == [TrialState.COMPLETE] * 5  # 3 kept + 2 new, not 3 + 5
    assert len({tuple(t.params.items()) for t in study}) == 5  # no trial repeated: the sampler's seed moved on
    assert all(t.value == (t.params["x"] - 1) ** 2 + t.params["n"] for t in study)  # what each job returned
    assert jobs(app / "first") == ["0", "1", "2"] and jobs(app / "again") == ["3", "4"]  # job number = trial number
    results = (app / "again" / "optimization_results.yaml").read_text()
    assert f"best_value: {min(t.value for t in study)}" in results


@pytest.mark.slow
def test_a_failing_trial_is_told_fail_and_the_search_goes_on(app):
    proc = search(app, "first", "hydra.sweeper.n_trials=2", f"raise_once={app / 'raised'}")
    assert "Trial 0 failed: ValueError('this trial fails')" in proc.stdout + proc.stderr
    assert [t.state for t in trials(app)] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


@pytest.mark.slow
def test_a_search_whose_trials_all_fail_stops_and_says_so(app):
    proc = search(app, "first", "hydra.sweeper.n_trials=1", f"raise_once={app / 'raised'}", check=False)
    assert proc.returncode == 1  # as many failures as the trials it set out to complete
    assert "1 trial(s) failed in this search: it stops" in proc.stdout + proc.stderr
    search(app, "again", "hydra.sweeper.n_trials=1")  # the same command: the missing trial
    assert [t.state for t in trials(app)] == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_the_trial_of_a_killed_search_is_failed_and_run_again(app):
    killed = search(app, "first", "hydra.sweeper.n_trials=2", f"kill_once={app / 'killed'}", check=False)
    assert killed.returncode == -9
    [running] = trials(app)
    assert running.state == TrialState.RUNNING
    time.sleep(3)  # no heartbeat for twice the interval: stale
    search(app, "again", "hydra.sweeper.n_trials=2")
    failed, retried, new = trials(app)
    assert [failed.state, retried.state, new.state] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert retried.params == failed.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_the_trial_whose_job_died_is_run_again_by_the_same_search(app):
    proc = search(app, "first", "hydra.sweeper.n_trials=2", "hydra/launcher=submitit_local", f"kill_once={app / 'k'}")
    assert "Trials [0] lost their jobs (UncompletedJobError: " in proc.stdout + proc.stderr
    failed, retried, new = trials(app)
    assert [failed.state, retried.state, new.state] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert retried.params == failed.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == 0


@pytest.mark.slow
def test_two_searches_share_one_study(app):
    # the study made beforehand, so that the two do not both create its tables in the new database at once
    optuna.create_study(study_name="toy", storage=f"sqlite:///{app}/search.db")
    command = [sys.executable, str(ROOT / APP), f"--config-dir={app}", "-m", "hydra.sweeper.n_trials=6", "seconds=2"]
    workers = [subprocess.Popen([*command, f"hydra.sweep.dir={app / sweep}"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for sweep in ("a", "b")]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = trials(app)
    complete = [t.number for t in study if t.state == TrialState.COMPLETE]
    # each asked only for trials that the other was not running; at most one more when both asked at once
    assert [t.state for t in study if t.state != TrialState.COMPLETE] == [] and 6 <= len(complete) <= 7
    a, b = jobs(app / "a"), jobs(app / "b")
    assert a and b and sorted(int(j) for j in a + b) == complete, outputs  # both ran trials, none twice or lost
