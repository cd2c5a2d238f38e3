"""Train the judge of sample quality (ddpm.evaluation.judge) on MNIST's training split and save it to `classifier`.

    ddpm-judge data.root=../shared/data
"""

import logging
import time
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from ddpm.cli.app import run_app
from ddpm.data.mnist import load_mnist_split
from ddpm.evaluation.judge import Judge, save_judge, train_judge

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float:
    """Train on the training split, report test accuracy, save to cfg.classifier."""
    Judge(cfg.width, cfg.num_features)  # refuses a bad width before MNIST is read
    train = load_mnist_split(cfg.data.root, "train", cfg.data.download, cfg.data.check_md5)
    test = load_mnist_split(cfg.data.root, "test", cfg.data.download, cfg.data.check_md5)
    start = time.time()
    judge, test_accuracy = train_judge(*train, *test, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                       seed=cfg.seed, width=cfg.width, num_features=cfg.num_features)
    path = save_judge(judge, Path(cfg.classifier), test_accuracy)
    log.info(f"test accuracy {test_accuracy:.4f} after {time.time() - start:.0f} s; saved {path}")
    return test_accuracy


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "classifier", run)


if __name__ == "__main__":
    main()
