"""The judge and the sample scores on small inputs (synthetic digits: class k is a bar at row 4 + 2k), and the metrics
callback in a training run; tests/test_metrics.py has the same on real MNIST, and the commands (slow tier)."""

import math

import pytest
import torch
from conftest import TINY, compose_train, make_synthetic_mnist
from test_guidance import write_checkpoint

import ddpm.evaluation.scores
from ddpm.commands.compare import compare
from ddpm.commands.evaluate import evaluate
from ddpm.commands.train import train
from ddpm.data.mnist import load_mnist_split
from ddpm.errors import ConfigError
from ddpm.evaluation.judge import accuracy, load_judge, save_judge, train_judge
from ddpm.evaluation.scores import SampleScorer


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = make_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=600, n_test=400)
    return root, *(load_mnist_split(root, split, download=False, check_md5=False) for split in ("train", "test"))


@pytest.fixture(scope="module")
def judge(digits, tmp_path_factory):
    """A small judge, trained for a second. Neighbouring bars overlap by two rows, and the judge trains on images
    shifted by up to two pixels, so it confuses some neighbours: about 80% right (chance: 10%)."""
    _, (train_x, train_y), (test_x, test_y) = digits
    classifier, test_accuracy = train_judge(train_x, train_y, test_x[:200], test_y[:200], epochs=4, batch_size=50,
                                            width=8, num_features=32)
    return save_judge(classifier, tmp_path_factory.mktemp("judge") / "cnn.pt", test_accuracy), test_accuracy


def test_judge_learns_the_classes_and_loads_back(judge, digits):
    path, test_accuracy = judge
    _, _, (test_x, test_y) = digits
    assert test_accuracy > 0.7
    assert accuracy(load_judge(path), test_x[:200], test_y[:200]) == pytest.approx(test_accuracy)


def test_scores_order_real_noise_and_constant(judge, digits):
    _, (train_x, train_y), (test_x, _) = digits
    scorer = SampleScorer(load_judge(judge[0]), test_x[:200], floor_images=train_x[200:], floor_subsets=4)
    real = scorer.score(train_x[:200], train_y[:200])
    noise, constant = scorer.score(torch.rand(200, 1, 28, 28)), scorer.score(torch.full((200, 1, 28, 28), 0.5))
    assert real["fid"] < 0.01 * min(noise["fid"], constant["fid"])
    assert real["class_accuracy"] > 0.7 and "class_accuracy" not in noise
    assert real["class_entropy"] > 0.8 * math.log(10) > 5 * noise["class_entropy"]  # ten classes against about one
    assert constant["class_entropy"] == 0 and constant["confidence"] > 0.1
    # the floor at n = 100: the mean over 4 disjoint sets of 100 floor images, larger than at n = 200 (2 sets)
    floor100 = scorer.floor(100)
    judge = scorer.by_judge["judge"]
    by_hand = sum(judge.distances(train_x[200 + 100 * k : 300 + 100 * k])["fid"] for k in range(4)) / 4
    assert floor100["fid_floor"] == pytest.approx(by_hand) and floor100["fid_floor"] > scorer.floor(200)["fid_floor"]
    # float images are scored as the 8-bit images a PNG holds: the same as their uint8 rounding
    soft = train_x[:200].float() / 255 + (torch.rand(200, 1, 28, 28) - 0.5) / 300  # less than half a level
    assert scorer.score(soft, train_y[:200]) == pytest.approx(real)


def test_metrics_callback_logs_fid_and_keeps_the_judge_out_of_the_model(judge, digits, tmp_path):
    cfg = compose_train(tmp_path, [*TINY, f"data.root={digits[0]}", "data.check_md5=false", "trainer.max_steps=3",
                                   "callbacks.sample_grid=null", f"callbacks.sample_metrics.classifier={judge[0]}",
                                   "callbacks.sample_metrics.every_n_validations=1", "callbacks.sample_metrics.n=20",
                                   "callbacks.sample_metrics.sampler.steps=3"])
    metrics = train(cfg)
    # after 3 steps the samples are noise: far from the digits, and no class asked for is recognised reliably
    assert metrics["metrics/fid"] > 10 * SampleScorer(load_judge(judge[0]), digits[2][0][:200]).score(
        digits[1][0][:20])["fid"]
    assert 0 <= metrics["metrics/class_accuracy"] <= 1
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(key.startswith(("net.", "diffusion.")) for key in ckpt["state_dict"])
    assert all(not key.startswith(("classifier", "scorer")) for key in ckpt["current_model_state"])


# The synthetic split has 400 test and 600 training images: the floor's 4 disjoint sets of n allow n <= 150.
FLOOR_LIMIT = "use an integer from 2 to 150 (the real-vs-real floor takes floor_subsets=4 disjoint sets of n of the " \
              "600 training images)"


@pytest.mark.parametrize("command, given, refusal", [
    ("evaluate", ["n=151"], f"n=151 is invalid: {FLOOR_LIMIT}"),
    ("compare", ["n=151"], f"n=151 is invalid: {FLOOR_LIMIT}"),
    ("compare", ["n=401", "floor_subsets=1"],
     "n=401 is invalid: use an integer from 2 to 400 (the 400 test images the samples are compared with)"),
])
def test_an_n_the_scorer_cannot_take_is_refused_before_anything_is_sampled(command, given, refusal, judge, digits,
                                                                           tmp_path, monkeypatch):
    """The floor at n needs 4 disjoint sets of n training images, and n is at most the test images the samples are
    compared with; an n beyond that used to sample everything first and then end in a ValueError."""
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before refusing n")

    monkeypatch.setattr(ddpm.evaluation.scores, "generate", no_sampling)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    what = f"ckpt={ckpt}" if command == "evaluate" else f"runs={tmp_path / 'run'}"
    cfg = compose_train(tmp_path / "out", [what, *given, f"data.root={digits[0]}", "data.check_md5=false",
                                           f"classifier={judge[0]}", "classifier2=null", "device=cpu"],
                        config_name=command)
    with pytest.raises(ConfigError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        {"evaluate": evaluate, "compare": compare}[command](cfg)
    assert not (tmp_path / "out").exists()


def test_the_metrics_callback_refuses_an_n_above_the_test_split_before_training(judge, digits, tmp_path):
    cfg = compose_train(tmp_path, [*TINY, f"data.root={digits[0]}", "data.check_md5=false",
                                   f"callbacks.sample_metrics.classifier={judge[0]}",
                                   "callbacks.sample_metrics.every_n_validations=1", "callbacks.sample_metrics.n=401"])
    with pytest.raises(ConfigError, match=r"callbacks.sample_metrics.n=401 is invalid: use an integer from 2 to 400 "
                                          r"\(the 400 test images the samples are compared with\)"):
        train(cfg)
    assert not any(tmp_path.iterdir())  # no config, log, checkpoint or grid
