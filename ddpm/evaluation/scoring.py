"""Sampling for a score: the scorer built from the configs' data and judge paths, and one scored point
(n samples of one sampler at one guidance scale), with the real-vs-real floor at the same n. Used by
`ddpm.commands.evaluate`, `ddpm.commands.compare` and the metrics callback."""

import time

import torch

from ddpm.data.images import to_pixels
from ddpm.data.mnist import load_mnist_split
from ddpm.evaluation.judge import load_classifier
from ddpm.evaluation.scores import SampleScorer, quantize
from ddpm.sampling.generate import cycling_labels, generate


def build_scorer(data, classifier: str, classifier2: str | None = None, floor_subsets: int = 4,
                 device: torch.device | str = "cpu") -> SampleScorer:
    """Judges against the MNIST test split; the floor from disjoint sets of training images. `data` is the data
    config (root, download, check_md5)."""
    test_images, _ = load_mnist_split(data.root, "test", data.download, data.check_md5)
    train_images, _ = load_mnist_split(data.root, "train", data.download, data.check_md5)
    judges = {"judge": load_classifier(classifier)}
    if classifier2:
        judges["judge2"] = load_classifier(classifier2)
    return SampleScorer(judges, test_images, floor_images=train_images, floor_subsets=floor_subsets, device=device)


def sample_images(module, sampler, n: int, guidance: float, seed: int, batch_size: int,
                  guidance_interval: tuple[float, float] | None = None, progress: str | None = None):
    """n 8-bit samples (labels cycling 0-9 for a conditional module), the labels, the seconds it took, and the
    network evaluations per image. `progress` names the sampling in its progress lines (None: silent)."""
    labels = cycling_labels(n) if module.conditional else None
    start = time.perf_counter()
    result = generate(module, sampler, n, labels, guidance, seed, batch_size=batch_size,
                      guidance_interval=guidance_interval, progress=progress)
    if result.images.is_cuda:
        torch.cuda.synchronize()
    return quantize(to_pixels(result.images.cpu())), labels, time.perf_counter() - start, result.nfe


def score_sampler(module, sampler, scorer: SampleScorer, n: int, guidance: float, seed: int, batch_size: int,
                  guidance_interval: tuple[float, float] | None = None, progress: str | None = None) -> dict:
    """Scores of n samples, the real-vs-real floor at the same n (when the scorer has floor images), timing, and
    the network evaluations per image (`nfe`). `progress` names the sampling in its progress lines (None: silent)."""
    images, labels, seconds, nfe = sample_images(module, sampler, n, guidance, seed, batch_size, guidance_interval,
                                                 progress)
    floor = scorer.floor(n) if scorer.floor_images is not None else {}
    return {**scorer.score(images, labels), **floor, "sampling_seconds": seconds, "images_per_second": n / seconds,
            "nfe": nfe}
