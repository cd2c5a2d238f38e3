"""compare's grids draw each arm at its own sampling setting: per key, the command line's grid.<key>, else the setting
stored for the arm's first seed's last checkpoint (its run's tuned sampling.yaml first), else the package default;
the report and the log say which, and a bad value is refused in one line before anything is sampled."""

import logging
import math

import pytest
import torch
import yaml
from conftest import compose_train
from test_guidance import write_checkpoint
from test_scores import digits, judge  # noqa: F401 (fixtures)

import ddpm.evaluation.plots
import ddpm.evaluation.scores
from ddpm.commands.compare import OPTIONS, compare, grid_setting
from ddpm.errors import ConfigError
from ddpm.evaluation.runs import describe, label_arms
from ddpm.evaluation.study import arm_pictures
from ddpm.sampling.setting import TUNED, stored_setting

DDIM4 = {"_target_": "ddpm.sampling.samplers.DDIMSampler", "steps": 4, "eta": 0.0}
# As training writes it (ddpm.training.grids): DDIM-4 at w = 1 in log-SNR [-3, 3].
CARRIED = stored_setting(DDIM4, 1.0, [-3, 3])
TUNED_SETTING = {"sampler": {"_target_": "ddpm.sampling.samplers.DPMSolverSampler", "steps": 3, "order": 2},
                 "steps": 3, "guidance": 0.5, "guidance_interval": None}


def tiny_run(folder, timesteps, sampling=None, tuned=None):
    """A run folder as compare reads it: checkpoints/last.ckpt (T = `timesteps`, which sets the arm apart), carrying
    `sampling` when given, and a tuned sampling.yaml beside it when given."""
    (folder / "checkpoints").mkdir(parents=True)
    ckpt = write_checkpoint(folder / "checkpoints" / "last.ckpt", schedule_timesteps=timesteps)
    if sampling is not None:
        torch.save({**torch.load(ckpt, weights_only=True), "sampling": sampling}, ckpt)
    if tuned is not None:
        (folder / TUNED).write_text(yaml.safe_dump(tuned))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three arms: one whose checkpoint carries a setting, one from before checkpoints carried one, and one whose
    checkpoint carries a setting that its run's tuned sampling.yaml overrules."""
    root = tmp_path_factory.mktemp("runs")
    return {"carried": tiny_run(root / "carried", 30, CARRIED), "plain": tiny_run(root / "plain", 40),
            "tuned": tiny_run(root / "tuned", 50, CARRIED, TUNED_SETTING)}


def arms(runs) -> dict:
    """name of the run folder -> (its arm, its Run), as compare labels them."""
    described = label_arms([describe(path) for path in runs.values()], OPTIONS)
    return {run.name: (arm, run) for arm, members in described.items() for run in members}


def settings(runs, tmp_path, *overrides) -> dict:
    cfg = compose_train(tmp_path / "report", ["runs=x", *overrides], config_name="compare")
    return {name: grid_setting(cfg, arm, run) for name, (arm, run) in arms(runs).items()}


def picture(runs, name, setting):
    arm, run = arms(runs)[name]
    return arm_pictures({arm: run}, {arm: setting}, seed=0, device="cpu")[0][arm]


def test_an_arm_whose_checkpoint_carries_a_setting_draws_with_it(runs, tmp_path):
    carried = settings(runs, tmp_path)["carried"]
    assert (repr(carried.sampler), carried.guidance, carried.guidance_interval) == (
        "DDIMSampler(steps=4, eta=0.0)", 1.0, (-3.0, 3.0))
    assert carried.sources == ("sampling setting: sampler DDIMSampler (checkpoint), steps 4 (checkpoint), "
                               "guidance 1.0 (checkpoint), guidance_interval [-3.0, 3.0] (checkpoint)")
    explicit = settings(runs, tmp_path, "sampler@grid.sampler=ddim", "grid.steps=4", "grid.guidance=1",
                        "grid.guidance_interval=[-3,3]")["carried"]
    assert explicit.sources.count("(command line)") == 4
    drawn = picture(runs, "carried", carried)
    assert torch.equal(drawn, picture(runs, "carried", explicit))
    # The package default draws other digits from the same noise.
    assert not torch.equal(drawn, picture(runs, "carried", settings(runs, tmp_path)["plain"]))


def test_guidance_on_the_command_line_wins_for_every_arm(runs, tmp_path):
    unguided = settings(runs, tmp_path, "grid.guidance=0")
    assert all(s.guidance == 0 and "guidance 0 (command line)" in s.sources for s in unguided.values())
    assert "guidance_interval [-3.0, 3.0] (checkpoint)" in unguided["carried"].sources  # the rest stays the arm's
    assert repr(unguided["tuned"].sampler) == "DPMSolverSampler(steps=3)"
    by_hand = settings(runs, tmp_path, "sampler@grid.sampler=ddim", "grid.steps=4", "grid.guidance=0")["carried"]
    assert torch.equal(picture(runs, "carried", unguided["carried"]), picture(runs, "carried", by_hand))


def test_a_run_with_a_tuned_setting_uses_it(runs, tmp_path):
    tuned = settings(runs, tmp_path)["tuned"]
    assert (repr(tuned.sampler), tuned.guidance, tuned.guidance_interval) == ("DPMSolverSampler(steps=3)", 0.5, None)
    assert tuned.sources.count(f"(tuned ({runs['tuned'] / TUNED}))") == 4


def test_a_checkpoint_without_a_setting_uses_the_default(runs, tmp_path):
    plain = settings(runs, tmp_path)["plain"]
    assert (repr(plain.sampler), plain.guidance, plain.guidance_interval) == (
        "SDEDPMSolverSampler(steps=29)", 1.31, (-0.83, math.inf))
    assert plain.sources.count("(default)") == 4
    # Another sampler named for every arm brings its own step count, not the checkpoint's.
    named = settings(runs, tmp_path, "grid.sampler=dpmpp")["carried"]
    assert repr(named.sampler) == "DPMSolverSampler(steps=20)" and "steps the sampler's own (default)" in named.sources


@pytest.mark.parametrize("given, tuned, refusal", [
    (["grid.steps=35"], TUNED_SETTING, "steps=35 exceeds the schedule's 30 timesteps"),
    ([], {**TUNED_SETTING, "guidance": -1}, "grid.guidance=-1 is invalid"),
    ([], {**TUNED_SETTING, "guidance_interval": [3, 1]}, r"grid.guidance_interval=\[3,1\] is invalid"),
])
def test_a_bad_setting_is_refused_in_one_line_naming_the_arm_before_sampling(given, tuned, refusal, tmp_path,
                                                                            monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before refusing the grid's setting")

    monkeypatch.setattr(ddpm.evaluation.scores, "generate", no_sampling)
    run = tiny_run(tmp_path / "run", 30, CARRIED, tuned)
    cfg = compose_train(tmp_path / "out", [f"runs={run}", *given, "device=cpu"], config_name="compare")
    with pytest.raises(ConfigError, match=f"^the grid of cosine: {refusal}") as raised:
        compare(cfg)
    assert "\n" not in str(raised.value) and not (tmp_path / "out").exists()


def test_the_report_and_the_log_say_each_arms_setting_and_its_sources(runs, digits, judge, tmp_path,  # noqa: F811
                                                                       caplog, monkeypatch):
    drawn = []
    monkeypatch.setattr(ddpm.evaluation.plots, "pictures", lambda images, title, path: drawn.append((images, title)))
    cfg = compose_train(tmp_path / "report", [
        f"runs=[{','.join(map(str, runs.values()))}]", "points=[{sampler:ddim,steps:[2],guidance:[0.0]}]", "n=20",
        "nll.n=0", "batch_size=20", "grid.guidance=0", f"data.root={digits[0]}", "data.check_md5=false",
        f"classifier={judge[0]}", "classifier2=null", "device=cpu"], config_name="compare")
    with caplog.at_level(logging.INFO, logger="ddpm.commands.compare"):
        report = compare(cfg).read_text()
    expected = settings(runs, tmp_path, "grid.guidance=0")
    (pictures, title), = drawn
    assert title == "each arm in its own sampling setting (under its name), the same noise: row k = digit k"
    for name, (arm, run) in arms(runs).items():
        line = expected[name].sources
        assert f"- {arm} (seed {run.seed}), {line}" in report and f"grid of {arm}: {line}" in caplog.text
        assert f"{arm} (seed {run.seed})\n{expected[name]}" in pictures  # the caption under each grid
