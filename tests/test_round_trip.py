"""train -> resume -> sample in this process, as `python train.py debug=tiny`, `python train.py resume=RUN` and
`python sample.py ckpt=...` run them: the functions the commands call, on configs composed as theirs are."""

import pytest
import torch
from conftest import compose_train

from ddpm.cli.app import prepare_argv
from ddpm.cli.runtime import user_error
from ddpm.commands.sample import sample
from ddpm.commands.train import train
from ddpm.errors import DDPMError
from ddpm.training.checkpoint import load_checkpoint

# debug=tiny stopped after 4 of its 20 steps, with last.ckpt every 2 steps, then resumed to 6.
RUN = ["debug=tiny", "trainer.val_check_interval=2", "callbacks.sample_grid=null",
       "callbacks.periodic_checkpoint.every_n_train_steps=2"]


def compose_resumed(run, *given: str):
    """The config of `python train.py resume=RUN given...`: run_app's argv expansion, then Hydra's composition."""
    argv = prepare_argv(["train.py", f"resume={run}", *given])
    assert argv[-1] == f"hydra.run.dir={run.resolve()}"
    return compose_train(run, argv[1:-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_synthetic_mnist):
    """A run stopped at step 4 and resumed to step 6 in its own folder, and the same 6 steps without a stop."""
    root = tmp_path_factory.mktemp("runs")
    data = [f"data.root={shared_synthetic_mnist}", "data.check_md5=false"]
    stopped, straight = root / "stopped", root / "straight"
    train(compose_train(stopped, [*RUN, *data, "trainer.max_steps=4"]))
    train(compose_train(straight, [*RUN, *data, "trainer.max_steps=6"]))
    resumed = train(compose_resumed(stopped, "trainer.max_steps=6"))
    return stopped, straight, resumed


def test_resume_continues_in_its_own_folder_as_if_never_stopped(runs):
    run, straight, metrics = runs
    final, expected = (load_checkpoint(r / "checkpoints" / "last.ckpt") for r in (run, straight))
    assert final["global_step"] == expected["global_step"] == 6
    assert int(final["averaging_state"]["n_averaged"]) == 6  # the EMA went on, it did not start again
    assert final["lr_schedulers"][0]["last_epoch"] == 6
    for key in ("state_dict", "current_model_state"):  # EMA and raw weights
        torch.testing.assert_close(final[key], expected[key], rtol=1e-5, atol=1e-6)
    # the resumed run's saved overrides are the first run's with the new step count
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.max_steps=6" in overrides and "trainer.max_steps=4" not in overrides and "data.root=" in overrides
    assert 0 < metrics["val/loss"] < 1.5


def draw(out, ckpt, *overrides: str) -> dict:
    """`python sample.py ckpt=CKPT overrides...` (5 DDIM steps unless told) into `out`: what samples.pt holds."""
    steps = [] if any(o.startswith("steps=") for o in overrides) else ["steps=5"]
    sample(compose_train(out, [f"ckpt={ckpt}", *steps, *overrides], config_name="sample"))
    return torch.load(out / "samples.pt", weights_only=True)


def test_sample_from_the_resumed_run(runs, tmp_path):
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    a, b = draw(tmp_path / "a", ckpt, "n=12", "seed=3"), draw(tmp_path / "b", ckpt, "n=12", "seed=3")
    assert a["images"].shape == (12, 1, 28, 28) and 0 <= a["images"].min() and a["images"].max() <= 1
    assert a["labels"].tolist() == [i % 10 for i in range(12)]
    assert torch.equal(a["images"], b["images"])  # the same seed, the same digits
    assert not torch.equal(a["images"], draw(tmp_path / "c", ckpt, "n=12", "seed=4")["images"])
    assert (tmp_path / "a" / "samples.png").is_file()
    one = draw(tmp_path / "seven", ckpt, "n=3", "digit=7", "trajectory=true", "trajectory_frames=3")
    assert one["labels"].tolist() == [7, 7, 7] and (tmp_path / "seven" / "trajectory.gif").stat().st_size > 0


def corrupt(kind: str, ckpt, folder):
    """A checkpoint file gone wrong in one of the ways a user meets."""
    path = folder / f"{kind}.ckpt"
    if kind == "missing":
        return path
    if kind == "truncated":
        path.write_bytes(ckpt.read_bytes()[:5000])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    else:
        checkpoint = torch.load(ckpt, weights_only=True)
        checkpoint["hyper_parameters"]["net"]["channels"] = 16
        torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("truncated", "it is truncated or not a PyTorch file"),
    ("text", "it is truncated or not a PyTorch file"),
    ("mismatched", "does not match its own model config"),
])
def test_sample_refuses_a_bad_checkpoint_before_writing(runs, tmp_path, kind, message):
    path = corrupt(kind, runs[0] / "checkpoints" / "last.ckpt", tmp_path)
    with pytest.raises(Exception) as raised:
        draw(tmp_path / "out", path)
    assert isinstance(user_error(raised.value), DDPMError) and message in str(user_error(raised.value))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, message", [
    (["steps=101"], "steps=101 exceeds the schedule's 100 timesteps"),
    (["unconditional=true", "digit=3"], "digit=3 needs class-conditional sampling: drop digit= or unconditional=true"),
])
def test_sample_refuses_what_the_checkpoint_cannot_do(runs, tmp_path, overrides, message):
    with pytest.raises(DDPMError, match=message):
        draw(tmp_path / "out", runs[0] / "checkpoints" / "last.ckpt", *overrides)
    assert not (tmp_path / "out").exists()
