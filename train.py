"""Train a DDPM on MNIST: python train.py [experiment=quickstart] [schedule=cosine] [model=tiny] [-m ...]"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("DDPM_PROJECT_ROOT", str(Path(__file__).resolve().parent))

from ddpm.cli import exit_on_user_error, prepare_argv  # noqa: E402
from ddpm.train import train  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    # The return value is what a Hydra sweeper would optimise.
    return train(cfg).get("val/loss")


if __name__ == "__main__":
    sys.argv = exit_on_user_error(prepare_argv)(sys.argv)
    main()
