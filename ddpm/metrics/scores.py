"""Scores of a batch of generated digits, judged by the MNIST classifier:

- fid: Frechet distance between classifier features of the samples and of the MNIST test split (torchmetrics);
- class_accuracy: how often the classifier reads the digit that was asked for (conditional samples);
- confidence: the classifier's mean max-probability (blurry or ambiguous digits score low);
- class_entropy: entropy (nats) of the histogram of predicted classes; log(10) = 2.303 means all ten digits
  equally often, which is what an unconditional model should produce.
"""

import math

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from ddpm.metrics.classifier import ClassifierFeatures, MNISTClassifier


class SampleScorer:
    """Holds the classifier and the real-data feature statistics, computed once; score() is cheap to repeat.
    The classifier lives here, never inside the LightningModule, so it is no parameter, optimizer state or EMA."""

    def __init__(self, classifier: MNISTClassifier, real_images: torch.Tensor, batch_size: int = 1000):
        self.classifier = classifier.eval()
        self.batch_size = batch_size
        self.fid = FrechetInceptionDistance(feature=ClassifierFeatures(self.classifier), reset_real_features=False)
        for batch in self._batches(real_images):
            self.fid.update(batch, real=True)

    def _batches(self, images: torch.Tensor):
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size]
            yield batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()

    @torch.inference_mode()
    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """images: N x 1 x 28 x 28, uint8 or float in [0, 1]; labels: the classes asked for, or None."""
        self.fid.reset()
        probabilities = []
        for batch in self._batches(images.cpu()):
            self.fid.update(batch, real=False)
            probabilities.append(self.classifier(batch).softmax(1))
        probabilities = torch.cat(probabilities)
        predicted = probabilities.argmax(1)
        histogram = predicted.bincount(minlength=10).double() / len(predicted)
        scores = {
            "fid": float(self.fid.compute()),
            "confidence": probabilities.max(1).values.mean().item(),
            "class_entropy": -sum(p * math.log(p) for p in histogram.tolist() if p > 0),
        }
        if labels is not None and (labels >= 0).all():
            scores["class_accuracy"] = (predicted == labels.cpu()).double().mean().item()
        return scores
