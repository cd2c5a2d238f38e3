"""The judge of sample quality: a small MNIST CNN (`Judge`). Its penultimate layer is the feature space of FID and
KID; its predictions give the class accuracy of conditional samples. Trained by `ddpm-judge`."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ddpm.errors import ClassifierError
from ddpm.files import save_tensors
from ddpm.validation import integer, number, positive_int


class Judge(nn.Module):
    """Two conv stages (28 -> 14 -> 7) and a `num_features`-wide hidden layer. Input: images in [0, 1]."""

    def __init__(self, width: int = 16, num_features: int = 128):
        super().__init__()
        self.config = {"width": positive_int("width", width),
                       "num_features": positive_int("num_features", num_features)}

        def stage(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.body = nn.Sequential(*stage(1, width), *stage(width, 2 * width), nn.Flatten(),
                                  nn.Linear(2 * width * 49, num_features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(num_features, 10))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        # Centred like the training data so that features of samples and of real digits are comparable.
        return self.body((images.float() - 0.5) / 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def save_judge(judge: Judge, path: Path, test_accuracy: float) -> Path:
    return save_tensors({"config": judge.config, "state_dict": judge.state_dict(), "test_accuracy": test_accuracy},
                        path)


def load_judge(path: str | Path) -> Judge:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClassifierError(
            f"no MNIST classifier at {path}: train it once with "
            f"`ddpm-judge data.root=<MNIST folder>` "
            "or point classifier=... at one"
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    judge = Judge(**saved["config"])
    judge.load_state_dict(saved["state_dict"])
    return judge.eval()


@torch.inference_mode()
def accuracy(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy on uint8 (or [0, 1] float) images."""
    judge.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch
        correct += (judge(batch).argmax(1) == labels[i : i + batch_size]).sum().item()
    return correct / len(images)


def train_judge(train_images, train_labels, test_images, test_labels, epochs: int = 3, batch_size: int = 128,
                lr: float = 2e-3, seed: int = 0, width: int = 16, num_features: int = 128) -> tuple[Judge, float]:
    """Adam with one-cycle LR and +-2 pixel random shifts; returns the judge and its test accuracy."""
    positive_int("epochs", epochs)
    integer("batch_size", batch_size, low=1, high=len(train_images), hint=" (at most the training images)")
    number("lr", lr, low=0, low_open=True)
    torch.manual_seed(integer("seed", seed, low=0, high=2**32 - 1))
    judge = Judge(width, num_features)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(train_images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    bar = tqdm(total=steps, desc="classifier", unit="step")
    for _ in range(epochs):
        judge.train()
        order = torch.randperm(len(train_images))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            index = order[i : i + batch_size]
            x = train_images[index].float() / 255
            # Random translations: cheap augmentation that buys the last few tenths of a percent.
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(judge(x), train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return judge.eval(), accuracy(judge, test_images, test_labels)
