"""Checkpoints written before the code moved into subpackages still load, resume, and sample the same images
(tests/fixtures/README.md says how the fixtures were made): within a stated tolerance of what another machine
sampled then, and bit for bit on one machine."""

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


# The fixture was sampled on an Intel Xeon. On another CPU kind (an AMD EPYC: both AVX-512) the float32 sums of
# the convolutions round differently in the last bit; the untrained net's unclipped outputs reach ~3500, where
# one float32 step is 2.4e-4, and the stochastic DDPM samplers carry the difference to a few such steps: 7.3e-4 at
# most, 2.1e-7 of the largest value, measured. 1e-5 of the largest value leaves 50x room; a sampler that changed
# its math (one noise draw more or less, another variance, another step order) moves outputs by O(1) of it.
CROSS_MACHINE = 1e-5


def _old_samples(name: str, guidance: float) -> torch.Tensor:
    return generate(load_module(OLD), SAMPLERS[name], 6, cycling_labels(6), guidance, seed=3, batch_size=4,
                    clip_x0=False).images


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_an_old_checkpoint_samples_what_it_sampled_then(name, guidance):
    expected = torch.load(FIXTURES / "v0_tiny_samples.pt", weights_only=True)[f"{name}_w{guidance:g}"]
    images = _old_samples(name, guidance)
    scale = expected.abs().max().item()
    torch.testing.assert_close(images, expected, rtol=0, atol=CROSS_MACHINE * scale)


@pytest.mark.parametrize("name", SAMPLERS)
def test_an_old_checkpoint_samples_bitwise_alike_on_one_machine(name):
    assert torch.equal(_old_samples(name, 2.0), _old_samples(name, 2.0))


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
