"""The MNIST judge, FID ordering, the metrics callback, `ddpm.evaluate` and `ddpm.compare`."""

import csv
import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, compose_train
from ddpm.data import load_mnist_split
from ddpm.metrics.classifier import accuracy, load_classifier, save_classifier, train_classifier
from ddpm.metrics.scores import SampleScorer
from ddpm.train import train


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    from conftest import mnist_root

    root = mnist_root()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST under {root}")
    return root, load_mnist_split(root, "train", download=False), load_mnist_split(root, "test", download=False)


@pytest.fixture(scope="module")
def judge(mnist, tmp_path_factory):
    """A quickly trained classifier (5000 images, one epoch): weaker than the real one, enough for orderings."""
    _, (train_x, train_y), (test_x, test_y) = mnist
    classifier, test_accuracy = train_classifier(train_x[:5000], train_y[:5000], test_x[:2000], test_y[:2000], epochs=1)
    path = save_classifier(classifier, tmp_path_factory.mktemp("judge") / "cnn.pt", test_accuracy)
    return path, test_accuracy


def test_classifier_round_trip(judge, mnist):
    path, test_accuracy = judge
    _, _, (test_x, test_y) = mnist
    assert test_accuracy > 0.85
    loaded = load_classifier(path)
    assert accuracy(loaded, test_x[:2000], test_y[:2000]) == pytest.approx(test_accuracy)
    assert torch.load(path, weights_only=True)["test_accuracy"] == test_accuracy


def test_fid_orders_real_noise_and_constant(judge, mnist):
    _, (train_x, train_y), (test_x, _) = mnist
    scorer = SampleScorer(load_classifier(judge[0]), test_x)
    real = scorer.score(train_x[:2000], train_y[:2000])
    noise = scorer.score(torch.rand(2000, 1, 28, 28))
    constant = scorer.score(torch.full((2000, 1, 28, 28), 0.5))
    assert real["fid"] < 0.1 * noise["fid"] and real["fid"] < 0.1 * constant["fid"]
    assert real["class_accuracy"] > 0.85
    assert real["class_entropy"] == pytest.approx(math.log(10), abs=0.05)
    assert constant["class_entropy"] == pytest.approx(0, abs=1e-9)  # one prediction for every image
    assert "class_accuracy" not in noise


def test_metrics_callback_logs_fid_and_keeps_the_judge_out_of_the_model(judge, mnist, tmp_path):
    root = mnist[0]
    cfg = compose_train(tmp_path, [*TINY, f"data.root={root}", "trainer.max_steps=3", f"callbacks.sample_metrics.classifier={judge[0]}",
                                   "callbacks.sample_metrics.every_n_validations=1", "callbacks.sample_metrics.n=20"])
    metrics = train(cfg)
    assert metrics["metrics/fid"] > 0 and 0 <= metrics["metrics/class_accuracy"] <= 1
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(key.startswith(("net.", "diffusion.")) for key in ckpt["state_dict"])
    assert all(not key.startswith(("classifier", "scorer")) for key in ckpt["current_model_state"])


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def two_seeds(mnist, tmp_path_factory):
    """Two tiny runs that differ only by seed, from a real -m sweep."""
    out = tmp_path_factory.mktemp("seeds")
    args = ["-m", "seed=0,1", *TINY, "schedule=cosine", "schedule.timesteps=20", f"data.root={mnist[0]}", f"hydra.sweep.dir={out}"]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_evaluate_writes_json(judge, mnist, two_seeds, tmp_path):
    ckpt = next(p for p in two_seeds.iterdir() if p.is_dir()) / "checkpoints" / "last.ckpt"
    proc = run_module("ddpm.evaluate", f"ckpt={ckpt}", "n=30", "steps=5", f"classifier={judge[0]}", f"data.root={mnist[0]}",
                      f"hydra.run.dir={tmp_path}")
    result = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("fid", "class_accuracy", "confidence", "class_entropy", "fid_real_floor", "sampling_seconds", "images_per_second"):
        assert key in result and math.isfinite(result[key])
    assert result["n"] == 30 and "fid_real_floor" in proc.stdout


def test_compare_writes_report(judge, mnist, two_seeds, tmp_path):
    run_module("ddpm.compare", f"runs={two_seeds}", "n=20", "steps=[2,5]", "grid_steps=5", f"classifier={judge[0]}",
               f"data.root={mnist[0]}", f"hydra.run.dir={tmp_path}")
    for name in ("report.md", "loss_curves.png", "schedules.png", "val_by_t.png", "grids.png", "trajectories.png",
                 "fid_vs_steps.png", "accuracy_vs_steps.png", "metrics.csv", "metrics.json"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    runs = sorted(p.name for p in two_seeds.iterdir() if p.is_dir())
    # one row per run, sampler and step count (2, 5 and T = 20)
    assert sorted((r["run"], r["sampler"], int(r["steps"])) for r in rows) == sorted(
        (run, sampler, steps) for run in runs for sampler in ("ddim", "ddpm") for steps in (2, 5, 20))
    summary = json.loads((tmp_path / "metrics.json").read_text())["seed_summary"]
    assert len(summary) == 6 and all(entry["seeds"] == 2 and "fid_std" in entry for entry in summary)
    report = (tmp_path / "report.md").read_text()
    assert "real-vs-real floor" in report and "Mean and spread over seeds" in report
    # Scores are cached in each run folder, so a later report over more runs samples only what is new.
    for run in runs:
        cached = json.loads((two_seeds / run / "scores.json").read_text())
        assert len(cached) == 6 and all("fid" in scores for scores in cached.values())
