"""Classifier-free guidance in a limited interval of log-SNR (Kynkaanniemi et al. 2024), its one rule for every
sampler and command, and the network evaluations it costs."""

import csv
import math

import pytest
import torch
from conftest import compose_train
from omegaconf import open_dict
from test_samplers import Recorder
from torch import nn

from ddpm.commands.sample import sample
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.errors import ConfigError
from ddpm.evaluation.points import expand_points
from ddpm.evaluation.results import RESULT_COLUMNS, merge_results
from ddpm.models.unet import UNet
from ddpm.sampling.guidance import Guided, check_interval
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, SDEDPMSolverSampler
from ddpm.training.module import DiffusionModule

SAMPLERS = [DDPMSampler(steps=6), DDIMSampler(6, eta=0.5), DPMSolverSampler(6), SDEDPMSolverSampler(6)]


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mults=(1, 2), attention=False, num_classes=10).eval()
    for p in net.parameters():  # away from the zero-initialised output, so that guidance changes the samples
        nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize("value", [[5, 1], [1], [1, 2, 3], [float("nan"), 1], [0, float("nan")], "wide", 3, [True, 2],
                                   ["a", 1]], ids=repr)
def test_bad_intervals_are_refused_in_one_line_naming_the_key(value):
    with pytest.raises(ConfigError) as raised:
        check_interval("guidance_interval", value)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("guidance_interval=")
    assert "is invalid: use [lo, hi] with lo <= hi, log-SNR values, e.g. [-2, 4]" in message


def test_the_refusal_reads_as_the_user_typed_it():
    with pytest.raises(ConfigError, match=r"^guidance_interval=\[5,1\] is invalid: use \[lo, hi\] with lo <= hi, "
                                          r"log-SNR values, e.g. \[-2, 4\]"):
        check_interval("guidance_interval", [5, 1])


def test_good_intervals_are_accepted():
    assert check_interval("guidance_interval", None) is None
    assert check_interval("guidance_interval", [-2, 4]) == (-2.0, 4.0)
    assert check_interval("guidance_interval", (1.5, 1.5)) == (1.5, 1.5)  # one noise level
    assert check_interval("guidance_interval", [-math.inf, 0]) == (-math.inf, 0.0)  # open below


def run(sampler, net, d, guidance, interval=None, seed=0):
    noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    return sampler.sample(net, d, noise, torch.tensor([1, 3, 5, 7]), guidance, guidance_interval=interval,
                          generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
@pytest.mark.parametrize("schedule", [LinearSchedule(40), CosineSchedule(40)], ids=["linear", "cosine"])
def test_an_interval_with_no_step_is_unguided_and_one_with_every_step_is_plain_guidance(tiny_net, sampler, schedule):
    d = GaussianDiffusion(schedule)
    unguided, plain = run(sampler, tiny_net, d, 0.0), run(sampler, tiny_net, d, 2.0)
    assert not torch.equal(unguided.images, plain.images)
    none = run(sampler, tiny_net, d, 2.0, (50.0, 60.0))  # above every step's log-SNR
    every = run(sampler, tiny_net, d, 2.0, (-60.0, 60.0))
    assert torch.equal(none.images, unguided.images) and none.nfe == unguided.nfe == 6
    assert torch.equal(every.images, plain.images) and every.nfe == plain.nfe == 12
    assert torch.equal(run(sampler, tiny_net, d, 2.0, (-math.inf, math.inf)).images, plain.images)


class Recording(Recorder):
    """Records (t, batch size) of every forward pass."""

    def forward(self, x, t, labels=None):
        self.calls.append((int(t[0]), x.shape[0]))
        return torch.zeros_like(x)


@pytest.mark.parametrize("schedule", [LinearSchedule(100), CosineSchedule(100)], ids=["linear", "cosine"])
def test_exactly_the_steps_in_the_interval_are_guided_in_two_halves_the_others_in_one_pass(schedule):
    """[-2, 4] in log-SNR picks different timesteps under each schedule, the same noise levels; the unguided steps
    cost one forward pass of the batch, the guided ones one pass of twice the batch."""
    d, model = GaussianDiffusion(schedule), Recording()
    sampler = DDIMSampler(20)
    result = sampler.sample(model, d, torch.randn(3, 1, 4, 4), torch.tensor([1, 2, 3]), 2.0, guidance_interval=(-2, 4))
    log_snr = schedule.log_snr()
    expected = [(t, 6 if -2 <= log_snr[t] <= 4 else 3) for t in sampler.timesteps(100)]
    assert model.calls == expected
    guided = sum(batch == 6 for _, batch in expected)
    assert 0 < guided < 20  # the interval cuts through the run
    assert result.nfe == 20 + guided
    planned = Guided(model, torch.tensor([1]), 2.0, (-2, 4), d.log_snr).planned_nfe(sampler.timesteps(100))
    assert planned == result.nfe  # what compare fills in for scores cached before NFE was recorded


def test_guided_wrapper_counts_passes_per_image_and_ignores_guidance_without_labels():
    model = Recording()
    guided = Guided(model, torch.tensor([1, 2]), 3.0)
    guided(torch.zeros(2, 1, 2, 2), 5)
    guided(torch.zeros(2, 1, 2, 2), 4)
    assert guided.nfe == 4 and [batch for _, batch in model.calls] == [4, 4]
    unlabelled = Guided(model, None, 3.0, (-60, 60), lambda t: 0.0)
    assert unlabelled.scale == 0.0 and not unlabelled.guided_at(5)


def write_checkpoint(path, schedule_timesteps=30):
    """A tiny conditional checkpoint as train.py writes it (hyper_parameters, state_dict), weights away from zero."""
    torch.manual_seed(0)
    module = DiffusionModule(
        net={"_target_": "ddpm.models.unet.UNet", "channels": 8, "channel_mults": [1, 2], "attention": False,
             "num_classes": 10},
        schedule={"_target_": "ddpm.diffusion.schedules.CosineSchedule", "timesteps": schedule_timesteps},
    )
    with torch.no_grad():
        for p in module.net.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "global_step": 0}, path)
    return path


def sample_with(tmp_path, ckpt, name, *overrides):
    cfg = compose_train(tmp_path / name, [f"ckpt={ckpt}", "n=6", "steps=5", "device=cpu", *overrides],
                        config_name="sample")
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / name)
    written = sample(cfg)
    return torch.load(written["samples"], weights_only=True)["images"]


def test_the_sample_command_honours_the_interval_bitwise(tmp_path):
    """The README's promise: an interval no step falls in is guidance=0, one that holds every step is plain
    guidance; and a bad interval is refused before anything is written."""
    ckpt = write_checkpoint(tmp_path / "tiny.ckpt")
    plain = sample_with(tmp_path, ckpt, "plain", "guidance=2", "guidance_interval=null")  # every step
    assert torch.equal(sample_with(tmp_path, ckpt, "none", "guidance=2", "guidance_interval=[50,60]"),
                       sample_with(tmp_path, ckpt, "w0", "guidance=0"))
    assert torch.equal(sample_with(tmp_path, ckpt, "every", "guidance=2", "guidance_interval=[-60,60]"), plain)
    assert not torch.equal(sample_with(tmp_path, ckpt, "w0b", "guidance=0"), plain)
    with pytest.raises(ConfigError, match=r"guidance_interval=\[5,1\] is invalid"):
        sample_with(tmp_path, ckpt, "bad", "guidance=2", "guidance_interval=[5,1]")
    assert not (tmp_path / "bad").exists()


def test_points_take_a_guidance_interval_and_refuse_a_bad_one():
    points = expand_points([{"sampler": "ddim", "steps": [10], "guidance": [2.0], "guidance_interval": [-2, 4]},
                            {"sampler": "ddim", "steps": [10], "guidance": [2.0]}], ["ddim"])
    assert [p.guidance_interval for p in points] == [(-2.0, 4.0), None]
    with pytest.raises(ConfigError, match=r"^points: guidance_interval=\[5,1\] is invalid: use \[lo, hi\]"):
        expand_points([{"sampler": "ddim", "guidance_interval": [5, 1]}], ["ddim"])


def test_results_without_the_new_columns_stay_loadable_and_merge(tmp_path):
    """docs/compare/results.csv has rows from before guidance_interval and nfe: they are kept, with those columns
    empty, and a new row of the same measurement without an interval replaces its old row."""
    old_columns = [c for c in RESULT_COLUMNS if c not in ("guidance_interval", "nfe")]
    path = tmp_path / "results.csv"
    old = [{c: "" for c in old_columns} | {"run": run, "train_step": "100", "sampler": "ddim", "steps": "50",
                                          "guidance": "2.0", "n": "1000", "fid": fid}
           for run, fid in (("a", "5.0"), ("b", "6.0"))]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns)
        writer.writeheader()
        writer.writerows(old)
    again = {"run": "a", "train_step": 100, "sampler": "ddim", "steps": 50, "guidance": 2.0, "guidance_interval": "",
             "nfe": 100, "n": 1000, "fid": 4.0}
    interval = again | {"guidance_interval": "[-2,4]", "nfe": 70, "fid": 3.0}
    merge_results(path, [again, interval])
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == RESULT_COLUMNS
    by_key = {(r["run"], r["guidance_interval"]): r for r in rows}
    assert len(rows) == 3 and set(by_key) == {("a", ""), ("a", "[-2,4]"), ("b", "")}
    assert by_key[("a", "")]["fid"] == "4.0" and by_key[("a", "")]["nfe"] == "100"
    assert by_key[("b", "")]["fid"] == "6.0" and by_key[("b", "")]["nfe"] == ""
    assert by_key[("a", "[-2,4]")]["nfe"] == "70"


def test_compare_rows_state_the_nfe_also_for_scores_cached_before_it_was_recorded(tmp_path):
    """A run's scores.json from before NFE was recorded: the rows get it from the steps and the interval, without
    sampling again (the scorer is never called)."""
    from omegaconf import OmegaConf

    from ddpm.commands.compare import make_sampler
    from ddpm.evaluation.cache import ScoreCache
    from ddpm.evaluation.points import Point
    from ddpm.evaluation.runs import describe
    from ddpm.evaluation.study import score_run

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")  # T = 30
    cfg = OmegaConf.create({"n": 4, "seed": 0, "batch_size": 4, "classifier": None, "classifier2": None,
                            "nll": {"n": 0}})
    cache = ScoreCache(tmp_path / "run", cfg)
    cache.put(ckpt, "meta", {"train_step": 0})
    old = {"fid": 1.0, "fid_floor": 0.5, "kid": 0.0, "images_per_second": 1.0}
    cache.put(ckpt, "ddim-10-w2", old)
    cache.put(ckpt, "ddim-10-w2-i[50,60]", old)
    points = [Point("ddim", 10, 2.0, "last", "all"), Point("ddim", 10, 2.0, "last", "all", (50.0, 60.0))]
    rows = score_run(describe(tmp_path / "run"), points, True, cfg, None, None, "cpu", make_sampler)
    assert [(r["guidance_interval"], r["nfe"], r["fid"]) for r in rows] == [("", 20, 1.0), ("[50,60]", 10, 1.0)]
    assert ScoreCache(tmp_path / "run", cfg).get(ckpt, "ddim-10-w2")["nfe"] == 20  # filled in once


def test_the_training_callbacks_take_an_interval(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path / "run", ["callbacks.sample_grid.guidance_interval=[-2,4]",
                                           "callbacks.sample_metrics.guidance_interval=[-inf,0]"])
    assert instantiate(cfg.callbacks.sample_grid).guidance_interval == (-2.0, 4.0)
    assert instantiate(cfg.callbacks.sample_metrics).guidance_interval == (-math.inf, 0.0)
    assert instantiate(compose_train(tmp_path / "run", []).callbacks.sample_grid).guidance_interval == (-1.0, math.inf)
    every = compose_train(tmp_path / "run", ["callbacks.sample_grid.guidance_interval=null"])
    assert instantiate(every.callbacks.sample_grid).guidance_interval is None
