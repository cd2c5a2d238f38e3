"""The MNIST judge and FID ordering on real MNIST, `ddpm.commands.evaluate` and `ddpm.commands.compare` as processes
(tests/test_scores.py has the scores and the metrics callback on small inputs, in the fast tier)."""

import csv
import json
import math

import pytest
import torch
from conftest import TINY, run_script

from ddpm.data.mnist import load_mnist_split
from ddpm.evaluation.judge import accuracy, load_judge, save_judge, train_judge
from ddpm.evaluation.scores import SampleScorer

# The judge is trained and scores on real MNIST: the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist(real_mnist):
    root = real_mnist
    return root, load_mnist_split(root, "train", download=False), load_mnist_split(root, "test", download=False)


@pytest.fixture(scope="module")
def judge(mnist, tmp_path_factory):
    """A quickly trained classifier (5000 images, one epoch): weaker than the real one, enough for orderings."""
    _, (train_x, train_y), (test_x, test_y) = mnist
    classifier, test_accuracy = train_judge(train_x[:5000], train_y[:5000], test_x[:2000], test_y[:2000], epochs=1)
    path = save_judge(classifier, tmp_path_factory.mktemp("judge") / "cnn.pt", test_accuracy)
    return path, test_accuracy


def test_classifier_round_trip(judge, mnist):
    path, test_accuracy = judge
    _, _, (test_x, test_y) = mnist
    assert test_accuracy > 0.85
    loaded = load_judge(path)
    assert accuracy(loaded, test_x[:2000], test_y[:2000]) == pytest.approx(test_accuracy)
    assert torch.load(path, weights_only=True)["test_accuracy"] == test_accuracy


def test_fid_orders_real_noise_and_constant(judge, mnist):
    _, (train_x, train_y), (test_x, _) = mnist
    scorer = SampleScorer(load_judge(judge[0]), test_x)
    real = scorer.score(train_x[:2000], train_y[:2000])
    noise = scorer.score(torch.rand(2000, 1, 28, 28))
    constant = scorer.score(torch.full((2000, 1, 28, 28), 0.5))
    assert real["fid"] < 0.1 * noise["fid"] and real["fid"] < 0.1 * constant["fid"]
    assert real["class_accuracy"] > 0.85
    assert real["class_entropy"] == pytest.approx(math.log(10), abs=0.05)
    assert constant["class_entropy"] == pytest.approx(0, abs=1e-9)  # one prediction for every image
    assert "class_accuracy" not in noise


def test_kid_floor_quantisation_and_second_judge(judge, mnist):
    _, (train_x, _), (test_x, _) = mnist
    classifier = load_judge(judge[0])
    scorer = SampleScorer({"judge": classifier, "other": classifier}, test_x[:2000], floor_images=train_x[:4000],
                          floor_subsets=4)
    real = scorer.score(train_x[4000:4500])
    noise = scorer.score(torch.rand(500, 1, 28, 28))
    # KID: near 0 for real digits (unbiased, so it can be slightly negative), large for noise, with a spread
    assert abs(real["kid"]) < 5 * real["kid_std"] + 1e-3 and noise["kid"] > 100 * max(real["kid"], 1e-4)
    assert noise["kid_std"] > 0
    # the same classifier twice gives the same scores under both names
    assert real["fid_other"] == pytest.approx(real["fid"]) and real["kid_other"] == pytest.approx(real["kid"])
    # the floor at n = 500 is the mean over 4 disjoint sets of 500 real digits, and larger than at n = 1000
    floor500, floor1000 = scorer.floor(500), scorer.floor(1000)
    by_hand = sum(scorer.by_judge["judge"].distances(train_x[k * 500 : (k + 1) * 500])["fid"] for k in range(4)) / 4
    assert floor500["fid_floor"] == pytest.approx(by_hand) and floor500["fid_floor"] > floor1000["fid_floor"]
    assert set(floor500) == {"fid_floor", "kid_floor", "fid_floor_other", "kid_floor_other"}
    # float images are scored as the 8-bit images a PNG holds: the same as their uint8 rounding
    soft = train_x[4000:4500].float() / 255 + (torch.rand(500, 1, 28, 28) - 0.5) / 300  # less than half a level
    assert scorer.score(soft)["fid"] == pytest.approx(real["fid"])


@pytest.fixture(scope="module")
def two_seeds(mnist, tmp_path_factory):
    """Two tiny runs that differ only by seed, from a real -m sweep."""
    out = tmp_path_factory.mktemp("seeds")
    run_script("train.py", "-m", "seed=0,1", *TINY, "schedule=cosine", "schedule.timesteps=20", f"data.root={mnist[0]}",
               f"hydra.sweep.dir={out}")
    return out


def test_evaluate_writes_json(judge, mnist, two_seeds, tmp_path):
    ckpt = next(p for p in two_seeds.iterdir() if p.is_dir()) / "checkpoints" / "last.ckpt"
    proc = run_script("ddpm.commands.evaluate", f"ckpt={ckpt}", "n=30", "steps=5", f"classifier={judge[0]}",
                      f"classifier2={judge[0]}", f"data.root={mnist[0]}", f"hydra.run.dir={tmp_path}")
    result = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("fid", "fid_floor", "kid", "kid_std", "fid_judge2", "class_accuracy", "confidence", "class_entropy",
                "sampling_seconds", "images_per_second"):
        assert key in result and math.isfinite(result[key]), key
    assert result["n"] == 30 and "fid_floor" in proc.stdout


def test_compare_writes_report(judge, mnist, two_seeds, tmp_path):
    """Two tiny runs of one arm (seeds 0 and 1): a row per run, checkpoint and point, the floor in every row,
    bits/dim per checkpoint, mean and spread over the two seeds, and the scores cached in the run folders."""
    points = "points=[{sampler:ddim,steps:[2,5],guidance:[2.0]},{sampler:ddpm,steps:[T],guidance:[2.0],seeds:first}," \
             "{sampler:ddim,steps:[5],guidance:[0.0],checkpoints:milestones}]"
    results = tmp_path / "merged" / "results.csv"
    args = [f"runs={two_seeds}", points, "n=20", "nll.n=8", "ddim_steps=5", "grid.steps=5", "batch_size=20",
            "floor_subsets=2", f"classifier={judge[0]}", f"classifier2={judge[0]}", f"data.root={mnist[0]}",
            f"results={results}"]
    run_script("ddpm.commands.compare", *args, f"hydra.run.dir={tmp_path / 'report'}")
    out = tmp_path / "report"
    for name in ("report.md", "results.csv", "summary.csv", "fid_vs_steps.png", "kid_vs_steps.png",
                 "fid_vs_train_steps.png", "val_by_log_snr.png", "bits_per_dim.png", "loss_curves.png", "schedules.png",
                 "grids.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "results.csv")))
    runs = sorted(p.name for p in two_seeds.iterdir() if p.is_dir())
    seeds = {r["run"]: int(r["seed"]) for r in rows}
    first = min(seeds, key=seeds.get)
    # TINY trains 6 steps: milestones at steps 2 (1/4 of 6, rounded), 3 and 4 (3/4 rounded), and the end
    expected = {(run, 6, "ddim", steps, "2.0") for run in runs for steps in (2, 5)} | {(first, 6, "ddpm", 20, "2.0")}
    expected |= {(run, step, "ddim", 5, "0.0") for run in runs for step in (2, 3, 4, 6)}
    assert {(r["run"], int(r["train_step"]), r["sampler"], int(r["steps"]), r["guidance"]) for r in rows} == expected
    assert sorted(set(seeds.values())) == [0, 1] and all(r["schedule"] == "cosine" and r["T"] == "20" for r in rows)
    for r in rows:
        assert float(r["fid_floor"]) > 0 and float(r["fid"]) > float(r["fid_floor"])
        assert float(r["bits_per_dim"]) > 0 and float(r["bits_per_dim_stderr"]) > 0 and r["fid_judge2"] == r["fid"]
    summary = list(csv.DictReader(open(out / "summary.csv")))
    two = [s for s in summary if s["seeds"] == "2"]
    assert len(two) == 2 + 4 and all(s["fid_std"] for s in two)
    assert len(list(csv.DictReader(open(results)))) == len(rows)
    # Scores are cached in each run folder: a second report samples nothing and writes the same numbers.
    cached = {run: json.loads((two_seeds / run / "scores.json").read_text()) for run in runs}
    assert all(any("ddim-5-w0" in key for key in entries) for entries in cached.values())
    run_script("ddpm.commands.compare", *args, f"hydra.run.dir={tmp_path / 'again'}")
    assert list(csv.DictReader(open(tmp_path / "again" / "results.csv"))) == rows
    assert {run: json.loads((two_seeds / run / "scores.json").read_text()) for run in runs} == cached


def test_compare_refuses_an_unknown_sampler_before_sampling(mnist, two_seeds, tmp_path):
    proc = run_script("ddpm.commands.compare", f"runs={two_seeds}", "points=[{sampler:ddimm,steps:[5]}]",
                      f"data.root={mnist[0]}", f"hydra.run.dir={tmp_path / 'r'}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: points: sampler=ddimm is unknown")
    assert not (tmp_path / "r").exists()
