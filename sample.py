"""Sample digits from a checkpoint: python sample.py ckpt=PATH n=100 sampler=ddim steps=50 guidance=2 seed=0"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("DDPM_PROJECT_ROOT", str(Path(__file__).resolve().parent))

from ddpm.cli import exit_on_user_error, prepare_argv  # noqa: E402
from ddpm.sample import sample  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    sample(cfg)


if __name__ == "__main__":
    sys.argv = exit_on_user_error(prepare_argv)(sys.argv)
    main()
