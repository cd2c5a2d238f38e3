"""ddpm-tune: the study over sampling settings of a checkpoint (a tiny model trained in-process on synthetic digits,
judged by a judge trained in a second), its resumption, the NFE budget applied before sampling, the winner in the
run folder's sampling.yaml, and sample.py drawing with it."""

import logging
import shutil
import sys

import pytest
import torch
from conftest import TINY, compose_train, make_synthetic_mnist, run_script
from omegaconf import OmegaConf

import ddpm.commands.tune as tune_command
from ddpm.commands.sample import sample
from ddpm.commands.train import train
from ddpm.data.mnist import load_mnist_split
from ddpm.errors import ConfigError
from ddpm.evaluation.judge import save_judge, train_judge
from ddpm.sampling.generate import cycling_labels, fixed_noise, generate
from ddpm.sampling.setting import TUNED, load_tuned, stored_for

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=600, n_test=400)


@pytest.fixture(scope="module")
def judge(digits, tmp_path_factory):
    (train_x, train_y), (test_x, test_y) = (load_mnist_split(digits, s, download=False, check_md5=False)
                                            for s in ("train", "test"))
    classifier, test_accuracy = train_judge(train_x, train_y, test_x[:200], test_y[:200], epochs=4, batch_size=50,
                                            width=8, num_features=32)
    return save_judge(classifier, tmp_path_factory.mktemp("judge") / "cnn.pt", test_accuracy)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained")
    train(compose_train(run, [*TINY, f"data.root={digits}", "data.check_md5=false"]))
    return run


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run: ddpm-tune writes into the run folder."""
    copy = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", copy / "checkpoints")
    return copy


# Scored trials of 20 digits; the re-scoring at 40 over two seeds. The tiny model's digits are noise that the judge
# reads as about one class (accuracy about 0.1): the accuracy bound is one that they pass.
SMALL = ["n=20", "final.n=40", "final.seeds=[1,2]", "final.finalists=2", "startup_trials=3", "min_accuracy=0.05",
         "search.steps=[2,12]", "batch_size=20"]


def tune_cfg(run, digits, judge, *overrides):
    return compose_train(run / "tune_log", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"data.root={digits}",
                                            "data.check_md5=false", f"classifier={judge}", f"classifier2={judge}",
                                            "device=cpu", *SMALL, *overrides], config_name="tune")


@pytest.fixture
def sampled(monkeypatch):
    """The network evaluations per image of every sampling the command runs."""
    calls = []
    original = tune_command.score_sampler

    def counting(*args, **kwargs):
        scores = original(*args, **kwargs)
        calls.append(scores["nfe"])
        return scores

    monkeypatch.setattr(tune_command, "score_sampler", counting)
    return calls


def study_of(run):
    import optuna

    return optuna.load_study(study_name="tune", storage=f"sqlite:///{run / 'tune' / 'study.db'}")


def test_the_study_prunes_over_budget_settings_unsampled_writes_a_feasible_winner_and_resumes(run, digits, judge,
                                                                                            sampled, caplog):
    from optuna.trial import TrialState

    with caplog.at_level(logging.INFO, logger="ddpm.commands.tune"):
        winner = tune_command.tune(tune_cfg(run, digits, judge, "n_trials=4", "max_nfe=12"))
    # One line per trial: the scored ones counted k/N with their scores, the pruned ones with their NFE.
    scored_lines = [r.message for r in caplog.records if r.message.startswith("trial ") and "/4 (#" in r.message]
    assert len(scored_lines) == 4 and all("FID" in m and "accuracy" in m and "NFE" in m for m in scored_lines)
    assert "NFE > max_nfe=12, pruned unsampled" in caplog.text
    study = study_of(run)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(complete) == 4 and pruned, "steps up to 12 with guidance must draw settings over 12 NFE"
    assert all(t.user_attrs["nfe"] > 12 and "fid" not in t.user_attrs for t in pruned)
    # The checkpoint's own setting (SDE-DPM-Solver++ at the tiny run's 5 steps) is in the space: the first trial;
    # the package default's 29 steps are not.
    first = study.trials[0]
    assert first.user_attrs["incumbent"] == "checkpoint's setting"
    assert (first.params["sampler"], first.params["steps"], first.params["lo"]) == ("sde_dpmpp", 5, -0.83)
    # Sampled: the 4 trials at n = 20, then the finalists (the best 2 feasible, and the incumbent when it is not
    # among them) at n = 40 over 2 seeds; never more than 12 NFE.
    report = (run / "tune" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert 2 <= len(rows) <= 3 and len(sampled) == 4 + 2 * len(rows) and max(sampled) <= 12
    assert sorted(sampled[:4]) == sorted(t.user_attrs["nfe"] for t in complete)
    feasible = [t for t in complete if t.user_attrs["class_accuracy"] >= 0.05]
    assert winner["class_accuracy"] >= 0.05 and winner["nfe"] <= 12
    assert winner["trial"] in [t.number for t in sorted(feasible, key=lambda t: t.value)[:2]] + [0]
    assert "fid_judge2" in winner and winner["fid_floor"] > 0
    stored = load_tuned(run / TUNED)
    assert stored == winner["setting"] and stored["steps"] == stored["sampler"]["steps"]
    assert (run / TUNED).read_text().startswith("# ddpm-tune's setting for last.ckpt")
    assert "| trial | setting | NFE | FID judge 1 | FID judge 2 |" in report

    # The same command with more trials continues the study: the first four stay, two more are scored, and the
    # finalists already re-scored are not sampled again.
    before = [(t.number, t.params) for t in complete]
    sampled.clear()
    tune_command.tune(tune_cfg(run, digits, judge, "n_trials=6", "max_nfe=12"))
    complete = study_of(run).get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6 and [(t.number, t.params) for t in complete[:4]] == before
    assert 2 <= len(sampled) <= 2 + 2 * 3
    # Another n would mix scores of another meaning into the study: refused before sampling.
    sampled.clear()
    with pytest.raises(ConfigError, match="study_name=tune .* was run with other options"):
        tune_command.tune(tune_cfg(run, digits, judge, "n_trials=6", "max_nfe=12", "n=30"))
    assert sampled == []


def test_sample_draws_with_the_tuned_setting_and_says_so(run, digits, judge, tmp_path, caplog):
    winner = tune_command.tune(tune_cfg(run, digits, judge, "n_trials=3", "max_nfe=12"))
    ckpt = run / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO, logger="ddpm.commands.sample"):
        sample(compose_train(tmp_path / "tuned", [f"ckpt={ckpt}", "n=6"], config_name="sample"))
    assert f"(tuned ({run / TUNED}))" in caplog.text and "(checkpoint)" not in caplog.text
    setting = winner["setting"]
    sampler_name = {"DDIMSampler": "ddim", "DPMSolverSampler": "dpmpp", "SDEDPMSolverSampler": "sde_dpmpp",
                    "HeunSampler": "heun", "DDPMSampler": "ddpm"}[setting["sampler"]["_target_"].rsplit(".", 1)[1]]
    interval = setting["guidance_interval"]
    shown = "null" if interval is None else f"[{interval[0]},{interval[1]}]"
    explicit = [f"ckpt={ckpt}", "n=6", f"sampler={sampler_name}", f"steps={setting['steps']}",
                f"guidance={setting['guidance']}", f"guidance_interval={shown}"]
    sample(compose_train(tmp_path / "explicit", explicit, config_name="sample"))
    images = [torch.load(tmp_path / d / "samples.pt", weights_only=True)["images"] for d in ("tuned", "explicit")]
    assert torch.equal(*images)


def test_the_re_scoring_draws_other_digits_than_the_trials_unless_told_to(tmp_path):
    """At the trials' own seed the re-scoring's first n digits are the trials' (the draws that chose the finalists):
    the default seeds keep apart from it, and a choice that does not is warned of."""
    cfg = compose_train(tmp_path, ["ckpt=x"], config_name="tune")
    assert cfg.seed not in cfg.final.seeds and tune_command.reused_seed(cfg) is None
    # Why: image i's initial noise at a seed does not depend on how many are drawn.
    assert torch.equal(fixed_noise(cfg.n, cfg.seed), fixed_noise(cfg.final.n, cfg.seed)[: cfg.n])
    reused = compose_train(tmp_path, ["ckpt=x", "seed=2", "final.seeds=[0,2]"], config_name="tune")
    assert "final.seeds=[0,2] holds the trials' seed=2" in tune_command.reused_seed(reused)


def test_params_of_inverts_setting_of_within_the_search_space(tmp_path):
    cfg = compose_train(tmp_path, ["ckpt=x"], config_name="tune")
    default = tune_command.stored_setting(OmegaConf.to_container(cfg.incumbent.sampler), cfg.incumbent.guidance,
                                          cfg.incumbent.guidance_interval)
    params = tune_command.params_of(default, cfg.search)
    assert params == {"sampler": "sde_dpmpp", "steps": 29, "guidance": 1.31, "interval": "open above", "lo": -0.83}
    assert tune_command.setting_of(params) == default
    bounded = {**default, "guidance_interval": [-3.0, 3.0]}
    assert tune_command.setting_of(tune_command.params_of(bounded, cfg.search)) == bounded
    cfg.search.steps = [2, 12]  # 29 steps: outside the space
    assert tune_command.params_of(default, cfg.search) is None
    cfg.search.steps = [2, 50]  # first order: no sampler config of the space
    assert tune_command.params_of({**default, "sampler": {**default["sampler"], "order": 1}}, cfg.search) is None


def test_settings_that_guide_the_same_steps_are_one_finalist(run, digits, judge, tmp_path):
    """w and the interval's ends matter only through the steps they guide: settings of equal effect draw the same
    digits, so the re-scoring takes the best of them once (an incumbent too)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from ddpm.training.checkpoint import load_module

    module = load_module(run / "checkpoints" / "last.ckpt", ema=True)
    base = {"sampler": "sde_dpmpp", "steps": 6}
    settings = {  # an interval no step falls in is w = 0, whatever w; every step at w = 1 is not
        "high_empty": {**base, "guidance": 3.0, "interval": "bounded", "lo": 40.0, "width": 1.0},
        "w0": {**base, "guidance": 0.0, "interval": "every step"},
        "low_empty": {**base, "guidance": 1.0, "interval": "bounded", "lo": -40.0, "width": 1.0},
        "every": {**base, "guidance": 1.0, "interval": "every step"}}
    effects = {name: tune_command.prepared(module, tune_command.setting_of(p))[2] for name, p in settings.items()}
    assert effects["high_empty"] == effects["w0"] == effects["low_empty"] != effects["every"]

    def digits_of(name):
        setting = tune_command.setting_of(settings[name])
        sampler, _, _ = tune_command.prepared(module, setting)
        with torch.inference_mode():
            return generate(module, sampler, 8, cycling_labels(8), setting["guidance"], seed=3,
                            guidance_interval=setting["guidance_interval"]).images

    assert torch.equal(digits_of("high_empty"), digits_of("w0"))
    assert not torch.equal(digits_of("every"), digits_of("w0"))

    study = optuna.create_study()
    for number, (name, fid) in enumerate([("every", 3.0), ("high_empty", 1.0), ("w0", 2.0), ("low_empty", 4.0)]):
        attrs = {"effect": effects[name], "class_accuracy": 1.0, "nfe": 6,
                 **({"incumbent": "package default"} if name == "w0" else {})}
        study.add_trial(optuna.trial.create_trial(params={"n": number}, distributions={
            "n": CategoricalDistribution(list(range(4)))}, value=fid, user_attrs=attrs))
    cfg = OmegaConf.create({"min_accuracy": 0.5, "max_nfe": 50, "final": {"finalists": 1}})
    assert [t.user_attrs["effect"] == effects["w0"] for t in tune_command.finalists(study, cfg)] == [True]
    cfg.final.finalists = 3
    assert [t.value for t in tune_command.finalists(study, cfg)] == [1.0, 3.0]


def test_stored_for_prefers_the_runs_tuned_setting_and_refuses_a_bad_one(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert stored_for(ckpt, {"guidance": 1.0}) == ({"guidance": 1.0}, "checkpoint")
    tuned = {"sampler": {"_target_": "ddpm.sampling.samplers.DDIMSampler", "steps": 7, "eta": 0.0}, "steps": 7,
             "guidance": 2.0, "guidance_interval": [-2.0, float("inf")]}
    OmegaConf.save(OmegaConf.create(tuned), tmp_path / TUNED)
    assert stored_for(ckpt, {"guidance": 1.0}) == (tuned, f"tuned ({tmp_path / TUNED})")
    # A checkpoint outside a run's checkpoints/ folder has no run: its own setting.
    (tmp_path / "elsewhere").mkdir()
    assert stored_for(tmp_path / "elsewhere" / "x.ckpt", None) == (None, "checkpoint")
    (tmp_path / TUNED).write_text("guidance: 2\n")
    with pytest.raises(ConfigError, match="is not a sampling setting"):
        stored_for(ckpt, None)


@pytest.mark.parametrize("override, message", [
    ("n_trials=0", "n_trials=0 is invalid"),
    ("n=100000", "n=100000 is invalid"),
    ("search.samplers=[ddim,euler]", "search.samplers: euler is unknown"),
    ("min_accuracy=0", "min_accuracy=0 is invalid"),
    ("min_accuracy=1.5", "min_accuracy=1.5 is invalid"),
    ("max_nfe=0", "max_nfe=0 is invalid"),
    ("search.steps=[2,500]", "search.steps=500 is invalid"),
])
def test_bad_input_is_refused_before_sampling_and_writes_nothing(run, digits, judge, sampled, override, message):
    with pytest.raises(ConfigError, match=message):
        tune_command.tune(tune_cfg(run, digits, judge, override))
    assert sampled == [] and not (run / "tune").exists() and not (run / TUNED).exists()


def test_without_optuna_one_line_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # importlib.util.find_spec reads a None entry as missing
    monkeypatch.setattr(sys, "argv", ["ddpm-tune", "ckpt=x"])
    with pytest.raises(SystemExit) as exit_:
        tune_command.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: ddpm-tune needs optuna: pip install -e '.[optuna]'\n"


@pytest.mark.slow
def test_the_command_refuses_bad_input_in_one_line_as_a_process(tmp_path):
    proc = run_script("ddpm.commands.tune", "ckpt=x", "max_nfe=0", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "error: max_nfe=0 is invalid: use an integer >= 1 (network evaluations per image)\n"
    assert not (tmp_path / "out").exists()
