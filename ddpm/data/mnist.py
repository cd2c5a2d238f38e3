"""MNIST as one in-memory uint8 tensor per split.

The four official `.gz` IDX files are read directly, so a read-only folder holding only `MNIST/raw/*.gz` works
with no network; torchvision downloads them when they are missing and `download` is on. Batches are sliced out
of the tensor in one indexing operation (no per-sample PIL transform, no worker processes), and stay uint8 until
the LightningModule scales them to [-1, 1] on its device.
"""

import gzip
import hashlib
import os
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ddpm.errors import ConfigError, DDPMError, MNISTFileError
from ddpm.validation import boolean, integer, number, positive_int, refuse, text

# name -> (md5 of the official .gz file, as torchvision lists it; md5 of its uncompressed content; IDX magic number:
# 0x08 = uint8, low byte = ndim)
FILES = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb", 2051),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", 2049),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", 2051),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", 2049),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path: Path, magic: int, check_md5: str | None = None) -> np.ndarray:
    """Parse one IDX file (gzip-compressed or not) into a uint8 array, with an error that names the file.
    `check_md5` is the expected MD5 of the file as it is on disk (compressed or not)."""
    fix = "delete it and rerun with data.download=true, or copy the official file there"
    if check_md5 is not None:
        actual = _md5(path)
        if actual != check_md5:
            raise MNISTFileError(
                f"MNIST file {path} has MD5 {actual}, expected {check_md5}: {fix} (or set data.check_md5=false for "
                f"custom data)"
            )
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise MNISTFileError(f"MNIST file {path} cannot be read ({e}): {fix}") from None
    header = np.frombuffer(raw[:4], dtype=">i4")
    if len(raw) < 8 or int(header[0]) != magic:
        raise MNISTFileError(f"MNIST file {path} is not an IDX file with magic number {magic}: {fix}")
    ndim = magic & 0xFF
    shape = tuple(int(n) for n in np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">i4"))
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(shape)):
        raise MNISTFileError(
            f"MNIST file {path} is truncated: header says {shape}, file has {len(raw) - offset} bytes of data: {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _locate(raw_dir: Path, name: str) -> Path | None:
    for candidate in (raw_dir / f"{name}.gz", raw_dir / name):
        if candidate.exists():
            return candidate
    return None


def find_split_files(root: str | os.PathLike, split: str, download: bool = True) -> list[Path]:
    """Paths of the images and labels files of a split, downloaded through torchvision if missing and allowed."""
    raw_dir = Path(root).expanduser() / "MNIST" / "raw"
    paths = [_locate(raw_dir, name) for name in SPLIT_FILES[split]]
    if None in paths and download:
        from torchvision.datasets import MNIST

        try:
            MNIST(str(Path(root).expanduser()), train=split == "train", download=True)
        except Exception as e:  # noqa: BLE001 - any failure here means "no data", reported in one line below
            missing = [n for n, p in zip(SPLIT_FILES[split], paths) if p is None]
            raise MNISTFileError(
                f"MNIST files {missing} are missing in {raw_dir} and the download failed ({type(e).__name__}: "
                f"{' '.join(str(e).split())}): "
                f"put the four official .gz files in {raw_dir} or point data.root at a folder that has MNIST/raw/"
            ) from None
        paths = [_locate(raw_dir, name) for name in SPLIT_FILES[split]]
    for name, path in zip(SPLIT_FILES[split], paths):
        if path is None:
            raise MNISTFileError(
                f"MNIST file {raw_dir / name}.gz is missing: set data.root to a folder holding MNIST/raw/*.gz, "
                f"or enable data.download=true on a machine with internet"
            )
    return paths


def expected_md5(path: Path, name: str) -> str:
    gz_md5, raw_md5, _ = FILES[name]
    return gz_md5 if path.suffix == ".gz" else raw_md5


def load_mnist_split(root: str | os.PathLike, split: str, download: bool = True, check_md5: bool = True):
    """(images uint8 N x 1 x 28 x 28, labels int64 N) of the 'train' or 'test' split under root/MNIST/raw."""
    images_path, labels_path = find_split_files(root, split, download)
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx(images_path, FILES[images_name][2], expected_md5(images_path, images_name) if check_md5 else None)
    labels = read_idx(labels_path, FILES[labels_name][2], expected_md5(labels_path, labels_name) if check_md5 else None)
    if len(images) != len(labels):
        raise MNISTFileError(
            f"MNIST files {images_path} and {labels_path} disagree: {len(images)} images, {len(labels)} labels"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class TensorBatches(Dataset):
    """Rows of equally long tensors; `__getitems__` lets the DataLoader fetch a whole batch with one index op."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


def _keep_batch(batch):
    return batch


class ResumableShuffle(Sampler[int]):
    """A new order every epoch that depends only on (seed, epoch), this rank's share of it (as DistributedSampler),
    and, in the epoch a resumed run starts in, without the first `skip` indices that were trained on before the
    checkpoint. So a run resumed at any step sees the same batches as one that was never stopped. Lightning calls
    `set_epoch` at the start of every epoch."""

    def __init__(
        self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start_epoch: int = 0, skip: int = 0
    ):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.start_epoch, self.skip = start_epoch, skip
        self.epoch = start_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed((self.seed << 32) + self.epoch))
        mine = order[self.rank :: self.world_size][: len(self)]
        return iter(mine[self.skip if self.epoch == self.start_epoch else 0 :].tolist())


class ResumableLoader(DataLoader):
    """The training DataLoader over a ResumableShuffle, with its place in the data order as its state: Lightning
    saves `state_dict()` in the checkpoint (loops.fit_loop.state_dict.combined_loader) and calls `load_state_dict`
    on resume before it draws a batch, so a resumed run continues the epoch where it stopped, and Lightning knows
    it does (a stateful loader: it warns about a mid-epoch resume of any other). The place is counted in batches
    trained on (`trained_batches()`), which the batches drawn overtake."""

    def __init__(self, dataset, *, sampler: ResumableShuffle, trained_batches: Callable[[], int], **kwargs):
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.trained_batches = trained_batches

    def state_dict(self) -> dict:
        epoch, batch = divmod(self.trained_batches(), len(self))
        return {"epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.start_epoch = self.sampler.epoch = state["epoch"]
        self.sampler.skip = state["batch"] * self.batch_size


def log_snr_grid(values) -> tuple[float, ...]:
    """data.val_log_snr: a non-empty list of log-SNRs; beyond +-20 no schedule here has a step."""
    if isinstance(values, (str, int, float)) or not values:
        raise refuse("data.val_log_snr", values, "a non-empty list of numbers in [-20, 20], e.g. [-8, -4, 0, 4, 8]")
    return tuple(float(number("data.val_log_snr", v, -20, 20)) for v in values)


class MNISTDataModule(L.LightningDataModule):
    """Train on the training split (or its first `train_size` images); validate on the first `val_size` images of
    the test split. Each validation image carries fixed noise, a fixed timestep position u in [0, 1) on a grid of
    `val_timesteps` values (val/loss: comparable across epochs and runs), and a fixed log-SNR from `val_log_snr`
    (the same noise level under any schedule: comparable across schedules)."""

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        check_md5: bool = True,
        batch_size: int = 128,
        train_size: int | None = None,
        val_size: int = 1000,
        val_timesteps: int = 10,
        val_log_snr: tuple[float, ...] = (-8, -6, -4, -2, 0, 2, 4, 6, 8),
        val_seed: int = 1234,
        seed: int = 0,
    ):
        super().__init__()
        self.root = text("data.root", root)
        self.download = boolean("data.download", download)
        self.check_md5 = boolean("data.check_md5", check_md5)
        self.batch_size = positive_int("data.batch_size", batch_size, hint=", e.g. 128")
        self.train_size = positive_int("data.train_size", train_size, optional=True, hint=" (all 60000)")
        self.val_size = positive_int("data.val_size", val_size)
        self.val_timesteps = positive_int("data.val_timesteps", val_timesteps)
        self.val_log_snr = log_snr_grid(val_log_snr)
        # ResumableShuffle seeds its generator with (seed << 32) + epoch, which must stay a 64-bit seed.
        self.val_seed = integer("data.val_seed", val_seed, low=0, high=2**32 - 1)
        self.seed = integer("data.seed", seed, low=0, high=2**32 - 1)
        self.train_set = self.val_set = None

    def prepare_data(self):
        # Runs once per node before setup: downloads here so that DDP ranks don't race on the files.
        for split in ("train", "test"):
            find_split_files(self.root, split, self.download)

    def setup(self, stage: str | None = None):
        if self.train_set is not None:
            return
        images, labels = load_mnist_split(self.root, "train", download=False, check_md5=self.check_md5)
        if self.train_size:
            images, labels = images[: self.train_size], labels[: self.train_size]
        self.train_set = TensorBatches(images, labels)

        images, labels = load_mnist_split(self.root, "test", download=False, check_md5=self.check_md5)
        images, labels = images[: self.val_size], labels[: self.val_size]
        generator = torch.Generator().manual_seed(self.val_seed)
        noise = torch.randn(images.shape, generator=generator)
        index = torch.arange(len(images))
        position = (index % self.val_timesteps + 0.5) / self.val_timesteps
        log_snr = torch.tensor(self.val_log_snr, dtype=torch.float64)[index % len(self.val_log_snr)]
        self.val_set = TensorBatches(images, labels, noise, position, log_snr)

    def test_split(self):
        """The whole test split (uint8 images, labels): the real side of FID."""
        return load_mnist_split(self.root, "test", download=False, check_md5=self.check_md5)

    def batches_per_epoch(self, world_size: int = 1) -> int:
        per_rank = len(self.train_set) // world_size
        if per_rank < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the {per_rank} training images per process: "
                f"lower data.batch_size or raise data.train_size"
            )
        return per_rank // self.batch_size

    def trained_batches(self) -> int:
        """Batches each process has trained on: the steps taken, not the batches drawn (Lightning draws one ahead)."""
        return self.trainer.global_step * self.trainer.accumulate_grad_batches if self.trainer else 0

    def train_dataloader(self):
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        sampler = ResumableShuffle(len(self.train_set), self.seed, rank, world_size)
        loader = self._loader(self.train_set, self.batch_size, ResumableLoader, sampler=sampler, drop_last=True,
                              trained_batches=self.trained_batches)
        # Called after Lightning restored the step count: the position of a checkpoint that holds no loader state
        # (one written before the loader had any), which the state, when there is one, then replaces.
        loader.load_state_dict(loader.state_dict())
        return loader

    def val_dataloader(self):
        return self._loader(self.val_set, max(self.batch_size, 256))

    @staticmethod
    def _loader(dataset, batch_size, kind=DataLoader, **kwargs):
        # A generator of its own: otherwise every iter() draws a seed from the global RNG, and a resumed run, which
        # starts its iterators at other moments, would draw different training noise from then on.
        return kind(dataset, batch_size=batch_size, collate_fn=_keep_batch, generator=torch.Generator(), **kwargs)
