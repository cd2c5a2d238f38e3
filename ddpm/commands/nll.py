"""The variational bound in bits per dimension on MNIST test images (ddpm/diffusion/likelihood.py):

    ddpm-nll ckpt=PATH n=1000            # Monte-Carlo over t, with its standard error
    ddpm-nll ckpt=PATH n=50 exact=true   # all T terms per image

Prints `bits/dim: 1.2345 +- 0.0050` (four decimals) and writes nll.json into the run folder.
"""

import json
import logging
import time
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from ddpm.cli.app import run_app
from ddpm.cli.runtime import resolve_device
from ddpm.data.mnist import load_mnist_split
from ddpm.diffusion.likelihood import VARIANCES, bits_per_dim
from ddpm.errors import ConfigError
from ddpm.files import write_text
from ddpm.training.checkpoint import load_module

log = logging.getLogger(__name__)


def check_request(cfg: DictConfig) -> None:
    if not (isinstance(cfg.n, int) and cfg.n >= 2):
        raise ConfigError(f"n={cfg.n}: use an integer >= 2 (the standard error needs two images), e.g. n=1000")
    if not (isinstance(cfg.draws, int) and cfg.draws >= 1):
        raise ConfigError(f"draws={cfg.draws}: use an integer >= 1")
    if cfg.variance not in VARIANCES:
        raise ConfigError(f"variance={cfg.variance} is unknown: use one of {', '.join(VARIANCES)}")
    for key in ("head", "tail"):
        if not (isinstance(cfg[key], int) and cfg[key] >= 0):
            raise ConfigError(f"{key}={cfg[key]}: use an integer >= 0 (steps summed exactly at that end)")
    if not (isinstance(cfg.batch_size, int) and cfg.batch_size >= 1):
        raise ConfigError(f"batch_size={cfg.batch_size}: use a positive integer")


def nll(cfg: DictConfig) -> dict:
    check_request(cfg)
    device = resolve_device(cfg.device)
    module = load_module(cfg.ckpt, ema=cfg.ema).to(device)
    images, labels = load_mnist_split(cfg.data.root, "test", cfg.data.download, cfg.data.check_md5)
    if cfg.n > len(images):
        raise ConfigError(f"n={cfg.n} exceeds the {len(images)} test images")
    if cfg.labels and not module.conditional:
        raise ConfigError(f"labels=true needs a class-conditional model, and {cfg.ckpt} is unconditional: drop labels=")
    start = time.perf_counter()
    result = bits_per_dim(module.net, module.diffusion, images[: cfg.n], labels[: cfg.n] if cfg.labels else None,
                          draws=cfg.draws, exact=cfg.exact, variance=cfg.variance, batch_size=cfg.batch_size,
                          seed=cfg.seed, device=device, head=cfg.head, tail=cfg.tail,
                          progress="bits/dim")
    seconds = time.perf_counter() - start
    summary = {"ckpt": str(cfg.ckpt), "bits_per_dim": result["bits_per_dim"], "stderr": result["stderr"], "n": cfg.n,
               "estimator": "exact" if cfg.exact else f"first {cfg.head} and last {cfg.tail} steps exact, "
                                                      f"{cfg.draws} Monte-Carlo draw(s) of the others per image",
               "variance": cfg.variance, "labels": bool(cfg.labels), "timesteps": module.diffusion.timesteps,
               "seconds": seconds}
    out = Path(cfg.paths.output_dir)
    write_text(out / "nll.json", json.dumps(summary, indent=2))
    print(f"bits/dim: {result['bits_per_dim']:.4f} +- {result['stderr']:.4f}")
    log.info(f"{summary['estimator']}, n={cfg.n}, {seconds:.1f} s; wrote {out / 'nll.json'}")
    return summary


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "nll", nll)


if __name__ == "__main__":
    main()
