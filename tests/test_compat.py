"""Checkpoints written before the code moved into subpackages still load, resume, and sample the same images, bit
for bit (tests/fixtures/README.md says how the fixtures were made)."""

from pathlib import Path

import pytest
import torch

from ddpm.commands.train import train
from ddpm.sampling.generate import cycling_labels, generate
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler
from ddpm.training.checkpoint import load_checkpoint, load_module
from tests.conftest import compose_train

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD = FIXTURES / "v0_tiny.ckpt"
SAMPLERS = {"ddim": DDIMSampler(5), "ddpm": DDPMSampler(5), "ddpm_all": DDPMSampler(None), "dpmpp": DPMSolverSampler(5)}


def test_an_old_checkpoint_names_todays_classes():
    assert torch.load(OLD, weights_only=True)["hyper_parameters"]["net"]["_target_"] == "ddpm.unet.UNet"
    hparams = load_checkpoint(OLD)["hyper_parameters"]
    assert hparams["net"]["_target_"] == "ddpm.models.unet.UNet"
    assert hparams["schedule"]["_target_"] == "ddpm.diffusion.schedules.CosineSchedule"


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_an_old_checkpoint_samples_what_it_sampled_then(name, guidance):
    module = load_module(OLD)
    expected = torch.load(FIXTURES / "v0_tiny_samples.pt", weights_only=True)[f"{name}_w{guidance:g}"]
    images = generate(module, SAMPLERS[name], 6, cycling_labels(6), guidance, seed=3, batch_size=4,
                      clip_x0=False).images
    assert torch.equal(images, expected)


def test_a_run_resumes_from_an_old_checkpoint(tmp_path, synthetic_mnist):
    """The old checkpoint passes the resume checks (same model and schedule, by today's class names) and Lightning
    continues it from its step 3."""
    overrides = ["model=tiny", "model.channels=4", "model.channel_mults=[1,2]", "schedule=cosine",
                 "schedule.timesteps=50", "trainer.max_steps=5", "trainer.val_check_interval=5",
                 "trainer.enable_progress_bar=false", "data.train_size=64", "data.batch_size=16", "data.val_size=16",
                 "callbacks.sample_grid.sampler.steps=2", f"data.root={synthetic_mnist}", "data.check_md5=false",
                 f"ckpt_path={OLD}"]
    train(compose_train(tmp_path / "run", overrides))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 5
