"""Classifier-free guidance in a limited interval of log-SNR (Kynkaanniemi et al. 2024), its one rule for every
command, and the network evaluations it costs (for every sampler: tests/test_sampler_contract.py)."""

import csv
import math

import pytest
import torch
from conftest import compose_train
from omegaconf import open_dict
from test_samplers import Recorder

from ddpm.commands.sample import sample
from ddpm.errors import ConfigError
from ddpm.evaluation.points import expand_points
from ddpm.evaluation.results import RESULT_COLUMNS, merge_results
from ddpm.sampling.guidance import Guided, check_interval
from ddpm.training.module import DiffusionModule


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


class Recording(Recorder):
    """Records (t, batch size) of every forward pass."""

    def forward(self, x, t, labels=None):
        self.calls.append((int(t[0]), x.shape[0]))
        return torch.zeros_like(x)


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


def cached_rows(tmp_path, scores: dict, points: list) -> tuple[list, object]:
    """compare's rows for `points` on a T = 30 run whose scores.json holds `scores` (what -> scores), with no scorer:
    a point not in the cache fails. The rows and a function that reads the cache back."""
    from omegaconf import OmegaConf

    from ddpm.commands.compare import make_sampler
    from ddpm.evaluation.cache import ScoreCache
    from ddpm.evaluation.runs import describe
    from ddpm.evaluation.study import score_run

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    cfg = OmegaConf.create({"n": 4, "seed": 0, "batch_size": 4, "classifier": None, "classifier2": None,
                            "nll": {"n": 0}})
    cache = ScoreCache(tmp_path / "run", cfg)
    cache.put(ckpt, "meta", {"train_step": 0})
    for what, value in scores.items():
        cache.put(ckpt, what, value)
    rows = score_run(describe(tmp_path / "run"), points, True, cfg, None, None, "cpu", make_sampler)
    return rows, lambda what: ScoreCache(tmp_path / "run", cfg).get(ckpt, what)


OLD_SCORES = {"fid": 1.0, "fid_floor": 0.5, "kid": 0.0, "images_per_second": 1.0}


def test_compare_rows_state_the_nfe_also_for_scores_cached_before_it_was_recorded(tmp_path):
    """A run's scores.json from before NFE was recorded: the rows get it from the steps and the interval, without
    sampling again (the scorer is never called)."""
    from ddpm.evaluation.points import Point

    points = [Point("ddim", 10, 2.0, "last", "all"), Point("ddim", 10, 2.0, "last", "all", (50.0, 60.0))]
    rows, cached = cached_rows(tmp_path, {"ddim-10-w2": OLD_SCORES, "ddim-10-w2-i[50,60]": OLD_SCORES}, points)
    assert [(r["guidance_interval"], r["nfe"], r["fid"]) for r in rows] == [("", 20, 1.0), ("[50,60]", 10, 1.0)]
    assert cached("ddim-10-w2")["nfe"] == 20  # filled in once


def test_a_heun_score_from_evenly_spaced_steps_is_not_reused(tmp_path):
    """Heun stepped through DDIM's timesteps before it took rho-spaced ones: a score cached under its point alone is
    of that sampler, and the row takes the one keyed by the spacing."""
    from ddpm.evaluation.points import Point

    scores = {"heun-6-w2": {**OLD_SCORES, "fid": 5000.0, "nfe": 22}, "heun-6-w2-rho7": {**OLD_SCORES, "nfe": 22}}
    rows, _ = cached_rows(tmp_path, scores, [Point("heun", 6, 2.0, "last", "all")])
    assert [(r["sampler"], r["nfe"], r["fid"]) for r in rows] == [("heun", 22, 1.0)]


def test_the_training_callbacks_take_an_interval(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path / "run", ["callbacks.sample_grid.guidance_interval=[-2,4]",
                                           "callbacks.sample_metrics.guidance_interval=[-inf,0]"])
    assert instantiate(cfg.callbacks.sample_grid).guidance_interval == (-2.0, 4.0)
    assert instantiate(cfg.callbacks.sample_metrics).guidance_interval == (-math.inf, 0.0)
    assert instantiate(compose_train(tmp_path / "run", []).callbacks.sample_grid).guidance_interval == (-0.83, math.inf)
    every = compose_train(tmp_path / "run", ["callbacks.sample_grid.guidance_interval=null"])
    assert instantiate(every.callbacks.sample_grid).guidance_interval is None
