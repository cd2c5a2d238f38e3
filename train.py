"""Train a DDPM on MNIST: python train.py [experiment=quickstart] [schedule=cosine] [model=tiny] [-m ...]"""

from ddpm.cli import run_app
from ddpm.train import train

if __name__ == "__main__":
    # The return value (val/loss) is what a Hydra sweeper would optimise.
    run_app("train", lambda cfg: train(cfg).get("val/loss"))
