"""Scores during training: the callback that logs FID and class accuracy every few validations."""

from pathlib import Path

from ddpm.errors import ConfigError
from ddpm.evaluation.judge import load_judge
from ddpm.evaluation.scores import SampleScorer, check_n, sample_images
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.samplers import Sampler
from ddpm.training.grids import EMAValidationCallback
from ddpm.validation import integer, number, positive_int, text


class SampleMetrics(EMAValidationCallback):
    """Every `every_n_validations` validations, sample `n` images and log FID and class accuracy (see
    ddpm.evaluation.scores) under metrics/. 0 turns it off. The classifier and the real-image statistics are loaded
    on first use and kept here, outside the LightningModule."""

    def __init__(self, sampler: Sampler, classifier: str, every_n_validations: int = 0, n: int = 500,
                 guidance: float = 2.0, seed: int = 0, guidance_interval: list[float] | None = None):
        if every_n_validations > 0 and not Path(classifier).is_file():
            # Refused before training, not at the first scored validation, after checkpoints were written.
            raise ConfigError(
                f"callbacks.sample_metrics.classifier={classifier} does not exist: train it first with "
                f"`ddpm-judge`, or set callbacks.sample_metrics.every_n_validations=0"
            )
        self.sampler = sampler
        self.classifier = text("callbacks.sample_metrics.classifier", classifier)
        self.every_n_validations = integer("callbacks.sample_metrics.every_n_validations", every_n_validations, low=0,
                                           hint=" (0: off)")
        self.n = positive_int("callbacks.sample_metrics.n", n, hint=", e.g. 500")
        self.guidance = number("callbacks.sample_metrics.guidance", guidance, low=0, hint=" (0: no guidance)")
        self.guidance_interval = check_interval("callbacks.sample_metrics.guidance_interval", guidance_interval)
        self.seed = integer("callbacks.sample_metrics.seed", seed, low=0, high=2**32 - 1)
        self.validations = 0
        self.scorer = None

    def check_data(self, datamodule) -> None:
        """n against the test split the samples are compared with: called when training is built, so that a bad n
        is refused before the run writes anything, not at the first scored validation."""
        if self.every_n_validations > 0:
            check_n("callbacks.sample_metrics.n", self.n, len(datamodule.test_split()[1]))

    def on_ema_validation_end(self, trainer, pl_module):
        self.validations += 1
        if self.every_n_validations <= 0 or self.validations % self.every_n_validations:
            return
        if self.scorer is None:
            real_images, _ = trainer.datamodule.test_split()
            self.scorer = SampleScorer(load_judge(self.classifier), real_images)
        # The same 8-bit samples that evaluate and compare score, so that the numbers compare.
        images, labels, _, nfe = sample_images(pl_module, self.sampler, self.n, self.guidance, self.seed,
                                               batch_size=500, guidance_interval=self.guidance_interval)
        scores = {**self.scorer.score(images, labels), "nfe": float(nfe)}
        pl_module.log_dict({f"metrics/{k}": v for k, v in scores.items()}, rank_zero_only=True)
