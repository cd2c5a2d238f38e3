"""Scores of generated digits, judged by one or more MNIST judges (ddpm.evaluation.judge), and the sampling that
makes the digits a score is computed on:

- fid: Frechet distance between classifier features of the samples and of the MNIST test split (torchmetrics);
  biased upwards at small n, so it is only compared at equal n and beside `fid_floor`, the FID of n real
  training images at that same n;
- kid: kernel inception distance (torchmetrics, cubic polynomial kernel, unbiased in n) with its standard
  deviation over random subsets, `kid_std`;
- class_accuracy: how often the classifier reads the digit that was asked for (conditional samples);
- confidence: the classifier's mean max-probability (blurry or ambiguous digits score low);
- class_entropy: entropy (nats) of the histogram of predicted classes; log(10) = 2.303 means all ten digits
  equally often, which is what an unconditional model should produce.

The first judge gives the plain names; every further judge adds `fid_<name>`, `kid_<name>`, `kid_std_<name>`,
so that a verdict can be checked in a second feature space. Samples are quantised to 8 bits before scoring, as
the real digits are: a score must describe what a PNG of the sample holds.

`build_scorer` loads the judges and the real digits from the configs' paths; `score_sampler` samples one point
(n digits of one sampler at one guidance scale) and scores it beside the real-vs-real floor at the same n. Used by
`ddpm-evaluate`, `ddpm-compare` and the metrics callback.
"""

import math
import time

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ddpm.data.images import to_pixels
from ddpm.data.mnist import load_mnist_split
from ddpm.evaluation.judge import Judge, load_judge
from ddpm.sampling.generate import cycling_labels, generate
from ddpm.validation import integer

KID_SUBSETS = 100


def quantize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; float images in [0, 1] rounded to the 256 levels of an 8-bit PNG."""
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def check_n(key: str, n, real: int, floor: int | None = None, floor_subsets: int = 1) -> int:
    """n samples can be scored against `real` test images (KID draws subsets of min(n, 1000) from both sides) and,
    with a floor, beside `floor_subsets` disjoint sets of n of `floor` training images; otherwise `key`=n is
    refused in one line, before any sampling rather than after it."""
    high, why = real, f"the {real} test images the samples are compared with"
    if floor is not None and floor // floor_subsets < high:
        high = floor // floor_subsets
        why = (f"the real-vs-real floor takes floor_subsets={floor_subsets} disjoint sets of n of the {floor} "
               "training images")
    return integer(key, n, low=2, high=high, hint=f" ({why})")


class _Given(nn.Module):
    """The "feature network" handed to torchmetrics: the features are computed once by the judge and passed in,
    so that FID and KID (and the predictions) share one pass of the classifier."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class FeatureDistances:
    """FID and KID in one judge's feature space against fixed real images (their features computed once)."""

    def __init__(self, judge: Judge, real_images: torch.Tensor, batch_size: int, kid_subset_size: int,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.judge = judge.eval().to(self.device)
        self.batch_size = batch_size
        self.kid_subset_size = kid_subset_size
        given = _Given(self.judge.config["num_features"])
        self.fid = FrechetInceptionDistance(feature=given, reset_real_features=False)
        self.kid = KernelInceptionDistance(feature=given, subsets=KID_SUBSETS, subset_size=kid_subset_size,
                                           reset_real_features=False)
        self.fid.to(self.device)
        self.kid.to(self.device)
        features = self.features(real_images)
        self.fid.update(features, real=True)
        self.kid.update(features, real=True)

    def batches(self, images: torch.Tensor):
        for i in range(0, len(images), self.batch_size):
            yield quantize(images[i : i + self.batch_size]).to(self.device).float() / 255

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.judge.features(batch) for batch in self.batches(images)])

    def distances(self, images: torch.Tensor | None = None, seed: int = 0,
                  features: torch.Tensor | None = None) -> dict[str, float]:
        features = self.features(images) if features is None else features
        self.fid.reset()
        self.kid.reset()
        self.kid.subset_size = min(self.kid_subset_size, len(features))
        self.fid.update(features, real=False)
        self.kid.update(features, real=False)
        # KID draws its subsets from torch's global generator: a fixed seed makes the score a function of the images.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            if self.device.type == "cuda":
                torch.cuda.manual_seed(seed)
            kid, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid), "kid_std": float(kid_std)}


class SampleScorer:
    """Holds the judges and the real-data features, computed once (on `device`: a GPU makes the features and KID's
    100 subsets of 1000 cheap); score() is cheap to repeat. The judges live here, never inside the LightningModule,
    so they are no parameter, optimizer state or EMA.

    `floor_images` (real digits not in `real_images`, e.g. the training split) give the real-vs-real floor at
    any n: the mean FID and KID of `floor_subsets` disjoint sets of n of them."""

    def __init__(self, judges: Judge | dict[str, Judge], real_images: torch.Tensor,
                 floor_images: torch.Tensor | None = None, floor_subsets: int = 4, batch_size: int = 1000,
                 kid_subset_size: int = 1000, device: torch.device | str = "cpu"):
        if isinstance(judges, Judge):
            judges = {"judge": judges}
        # Each judge's FID and KID, by the judge's name.
        self.by_judge = {name: FeatureDistances(judge, real_images, batch_size, kid_subset_size, device)
                         for name, judge in judges.items()}
        self.real_count = len(real_images)
        self.main = next(iter(self.by_judge.values()))
        self.floor_images = floor_images
        self.floor_subsets = floor_subsets
        self._floors: dict[int, dict[str, float]] = {}

    def _suffixed(self, scores_by_judge: dict[str, dict[str, float]], prefix: str = "") -> dict[str, float]:
        out = {}
        for i, (name, scores) in enumerate(scores_by_judge.items()):
            for key, value in scores.items():
                out[f"{key}{prefix}" if i == 0 else f"{key}{prefix}_{name}"] = value
        return out

    @torch.inference_mode()
    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """images: N x 1 x 28 x 28, uint8 or float in [0, 1] (quantised to 8 bits); labels: the classes asked for,
        or None."""
        images = quantize(images.cpu())
        features = {name: space.features(images) for name, space in self.by_judge.items()}
        scores = self._suffixed({name: space.distances(features=features[name])
                                 for name, space in self.by_judge.items()})
        probabilities = self.main.judge.head(features[next(iter(self.by_judge))]).softmax(1).cpu()
        predicted = probabilities.argmax(1)
        histogram = predicted.bincount(minlength=10).double() / len(predicted)
        scores["confidence"] = probabilities.max(1).values.mean().item()
        scores["class_entropy"] = -sum(p * math.log(p) for p in histogram.tolist() if p > 0)
        if labels is not None and (labels >= 0).all():
            scores["class_accuracy"] = (predicted == labels.cpu()).double().mean().item()
        return scores

    def check_n(self, key: str, n) -> int:
        """n samples fit this scorer (check_n, below), refused in one line before anything is sampled."""
        floor = None if self.floor_images is None else len(self.floor_images)
        return check_n(key, n, self.real_count, floor, self.floor_subsets)

    @torch.inference_mode()
    def floor(self, n: int) -> dict[str, float]:
        """fid_floor, kid_floor (and per further judge): real-vs-real at this n, averaged over disjoint subsets."""
        if n not in self._floors:
            if self.floor_images is None:
                raise ValueError("this scorer has no floor_images")
            subsets = min(self.floor_subsets, len(self.floor_images) // n)
            if subsets < 1:
                raise ValueError(f"a floor at n={n} needs at least {n} floor images, have {len(self.floor_images)}")
            per_judge = {}
            for name, space in self.by_judge.items():
                runs = [space.distances(self.floor_images[k * n : (k + 1) * n]) for k in range(subsets)]
                per_judge[name] = {"fid": sum(r["fid"] for r in runs) / subsets,
                                   "kid": sum(r["kid"] for r in runs) / subsets}
            self._floors[n] = self._suffixed(per_judge, "_floor")
        return self._floors[n]


def build_scorer(data, classifier: str, classifier2: str | None = None, floor_subsets: int = 4,
                 device: torch.device | str = "cpu") -> SampleScorer:
    """Judges against the MNIST test split; the floor from disjoint sets of training images. `data` is the data
    config (root, download, check_md5)."""
    test_images, _ = load_mnist_split(data.root, "test", data.download, data.check_md5)
    train_images, _ = load_mnist_split(data.root, "train", data.download, data.check_md5)
    judges = {"judge": load_judge(classifier)}
    if classifier2:
        judges["judge2"] = load_judge(classifier2)
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
