"""Score a checkpoint: sample n digits, then FID, class accuracy, confidence and class entropy (ddpm.metrics),
beside the real-vs-real FID floor, plus sampling time and images/s.

    python -m ddpm.evaluate ckpt=PATH n=2000 sampler=ddim steps=50 guidance=2
"""

import json
import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm.cli import run_app
from ddpm.checkpoint import load_module
from ddpm.data import load_mnist_split
from ddpm.generate import cycling_labels, generate
from ddpm.images import to_pixels
from ddpm.metrics.classifier import load_classifier
from ddpm.metrics.scores import SampleScorer
from ddpm.sample import check_request, resolve_device

log = logging.getLogger(__name__)
REAL_FLOOR_IMAGES = 10_000


def build_scorer(cfg: DictConfig) -> tuple[SampleScorer, float]:
    """The scorer against the MNIST test split, and the FID of 10k training images against it (the floor)."""
    test_images, _ = load_mnist_split(cfg.data.root, "test", cfg.data.download, cfg.data.check_md5)
    train_images, _ = load_mnist_split(cfg.data.root, "train", cfg.data.download, cfg.data.check_md5)
    scorer = SampleScorer(load_classifier(cfg.classifier), test_images)
    return scorer, scorer.score(train_images[:REAL_FLOOR_IMAGES])["fid"]


def score_sampler(module, sampler, scorer: SampleScorer, n: int, guidance: float, seed: int, batch_size: int) -> dict:
    """Sample n images (labels cycling 0-9 for a conditional module) and score them; with timing."""
    labels = cycling_labels(n) if module.conditional else None
    start = time.perf_counter()
    images = generate(module, sampler, n, labels, guidance, seed, batch_size=batch_size).images
    seconds = time.perf_counter() - start
    return {**scorer.score(to_pixels(images.cpu()), labels), "sampling_seconds": seconds, "images_per_second": n / seconds}


def evaluate(cfg: DictConfig) -> dict:
    check_request(cfg)
    sampler = instantiate(cfg.sampler)
    module = load_module(cfg.ckpt, ema=cfg.ema).to(resolve_device(cfg.device))
    sampler.timesteps(module.diffusion.timesteps)  # refuse steps > T before any work
    scorer, floor = build_scorer(cfg)
    with torch.inference_mode():
        scores = score_sampler(module, sampler, scorer, cfg.n, cfg.guidance if module.conditional else 0.0, cfg.seed, cfg.batch_size)
    result = {"ckpt": str(cfg.ckpt), "sampler": repr(sampler), "timesteps": module.diffusion.timesteps, "n": cfg.n,
              "guidance": cfg.guidance, "seed": cfg.seed, **scores, "fid_real_floor": floor}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in result.items()))
    log.info(f"wrote {out / 'metrics.json'}")
    return result


if __name__ == "__main__":
    run_app("evaluate", evaluate)
