"""Train a DDPM on MNIST: python train.py [experiment=quickstart] [schedule=cosine] [model=tiny] [-m ...]"""

from ddpm.cli import run_app
from ddpm.train import objective

if __name__ == "__main__":
    run_app("train", objective)
