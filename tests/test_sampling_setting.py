"""A checkpoint carries the sampling setting of its recipe; sample and evaluate take each key from the command line,
else the checkpoint, else the package default, and say which."""

import logging

import pytest
import torch

from ddpm.commands.sample import sample
from ddpm.commands.train import train
from ddpm.sampling.setting import given_keys, resolve
from ddpm.training.checkpoint import load_checkpoint, load_module
from tests.conftest import TINY, compose_train

DEFAULT = {"sampler": {"_target_": "D", "steps": 25}, "steps": None, "guidance": 1.5, "guidance_interval": [-1, 9]}
STORED = {"sampler": {"_target_": "S", "steps": 7}, "steps": 7, "guidance": 1.0, "guidance_interval": [-3, 3]}


def test_each_key_comes_from_the_command_line_else_the_checkpoint_else_the_default():
    values, sources = resolve(DEFAULT, STORED, set())
    assert values == STORED and set(sources.values()) == {"checkpoint"}
    values, sources = resolve(DEFAULT, STORED, {"guidance"})
    assert values["guidance"] == 1.5 and sources["guidance"] == "command line"
    assert values["guidance_interval"] == [-3, 3] and sources["guidance_interval"] == "checkpoint"
    values, sources = resolve(DEFAULT, None, set())  # a checkpoint from before: today's behaviour
    assert values == DEFAULT and set(sources.values()) == {"default"}
    values, sources = resolve(DEFAULT, {"guidance": 2.0}, set())  # a partial setting: the rest from the default
    assert (values["guidance"], sources["guidance"], sources["sampler"]) == (2.0, "checkpoint", "default")


def test_another_sampler_on_the_command_line_takes_its_own_step_count():
    values, sources = resolve(DEFAULT, STORED, {"sampler"})
    assert values["sampler"] == DEFAULT["sampler"] and values["steps"] is None and sources["steps"] == "default"
    values, sources = resolve(DEFAULT, STORED, {"sampler", "steps"})
    assert sources["steps"] == "command line"


@pytest.mark.parametrize("overrides, expected", [
    (["guidance=0"], {"guidance"}),
    (["sampler=ddim", "steps=4"], {"sampler", "steps"}),
    (["sampler.order=1", "guidance_interval=null"], {"sampler", "guidance_interval"}),
    (["sampling@_global_=quickstart"], {"sampler", "guidance", "guidance_interval"}),  # a whole setting
    (["n=4", "seed=2"], set()),
])
def test_given_keys_reads_the_command_line(tmp_path, overrides, expected):
    compose_train(tmp_path, ["ckpt=x", *overrides], config_name="sample")
    assert given_keys() == expected


@pytest.mark.parametrize("overrides, expected", [
    (["grid.guidance=0", "n=4", "seed=2"], {"guidance"}),
    (["sampler@grid.sampler=ddim", "grid.steps=4"], {"sampler", "steps"}),
    (["grid.sampler=ddim", "grid.guidance_interval=null"], {"sampler", "guidance_interval"}),
    (["sampling@grid=quickstart"], {"sampler", "guidance", "guidance_interval"}),
    (["plan=quick", "main_guidance=1"], set()),
])
def test_given_keys_reads_the_keys_under_a_prefix(tmp_path, overrides, expected):
    """compare's grid setting lives under grid.: its keys there are given, and none of them at the top."""
    compose_train(tmp_path, ["runs=x", *overrides], config_name="compare")
    assert given_keys("grid") == expected and given_keys() == set()


@pytest.fixture(scope="module")
def quickstart_ckpt(tmp_path_factory, shared_synthetic_mnist):
    """experiment=quickstart's setting (w = 1.5 in [-1, 1]) on the tiny debug run (its grids: 5 steps)."""
    run = tmp_path_factory.mktemp("quick")
    train(compose_train(run, ["experiment=quickstart", *TINY, f"data.root={shared_synthetic_mnist}",
                              "data.check_md5=false"]))
    return run / "checkpoints" / "last.ckpt"


def test_training_writes_the_recipes_setting_into_every_checkpoint(quickstart_ckpt):
    for path in quickstart_ckpt.parent.glob("*.ckpt"):
        setting = load_checkpoint(path)["sampling"]
        assert setting["guidance"] == 1.5 and setting["guidance_interval"] == [-1.0, 1.0], path
        assert setting["sampler"]["_target_"].endswith("SDEDPMSolverSampler") and setting["steps"] == 5
    assert load_module(quickstart_ckpt).sampling_setting["guidance_interval"] == [-1.0, 1.0]


def _draw(out, ckpt, *overrides):
    sample(compose_train(out, [f"ckpt={ckpt}", "n=6", *overrides], config_name="sample"))
    return torch.load(out / "samples.pt", weights_only=True)["images"]


def test_sample_draws_with_the_checkpoints_setting_and_says_so(quickstart_ckpt, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ddpm.commands.sample"):
        plain = _draw(tmp_path / "plain", quickstart_ckpt)
    assert "guidance 1.5 (checkpoint)" in caplog.text and "guidance_interval [-1.0, 1.0] (checkpoint)" in caplog.text
    explicit = _draw(tmp_path / "explicit", quickstart_ckpt, "guidance=1.5", "guidance_interval=[-1,1]", "steps=5")
    assert torch.equal(plain, explicit)
    # The package default (w = 1.5 from log-SNR -1 up) draws other digits.
    assert not torch.equal(plain, _draw(tmp_path / "default", quickstart_ckpt, "guidance_interval=[-1,inf]"))


def test_the_command_line_still_wins(quickstart_ckpt, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ddpm.commands.sample"):
        unguided = _draw(tmp_path / "w0", quickstart_ckpt, "guidance=0")
    assert "guidance 0.0 (command line)" in caplog.text or "guidance 0 (command line)" in caplog.text
    assert "guidance_interval [-1.0, 1.0] (checkpoint)" in caplog.text
    assert torch.equal(unguided, _draw(tmp_path / "w0b", quickstart_ckpt, "guidance=0", "steps=5"))
    assert not torch.equal(unguided, _draw(tmp_path / "w1", quickstart_ckpt))
