"""Sample digits from a checkpoint: python sample.py ckpt=PATH n=100 sampler=ddim steps=50 guidance=2 seed=0"""

from ddpm.cli import run_app
from ddpm.sample import sample

if __name__ == "__main__":
    run_app("sample", sample)
