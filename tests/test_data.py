import gzip
import os
import stat

import pytest
import torch
from conftest import write_idx

from ddpm.data.mnist import MNISTDataModule, load_mnist_split
from ddpm.errors import MNISTFileError


def test_datamodule_on_synthetic_idx(synthetic_mnist):
    dm = MNISTDataModule(root=str(synthetic_mnist), download=False, check_md5=False, batch_size=32, val_size=50,
                         val_timesteps=5)
    dm.prepare_data()
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.max() <= 9
    assert len(dm.train_dataloader()) == 300 // 32  # drop_last
    images, labels, noise, position, log_snr = next(iter(dm.val_dataloader()))
    assert images.shape == (50, 1, 28, 28) and noise.shape == (50, 1, 28, 28)
    assert sorted(set(position.tolist())) == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert sorted(set(log_snr.tolist())) == [-8, -6, -4, -2, 0, 2, 4, 6, 8]
    # The same validation noise every time the data module is built.
    dm2 = MNISTDataModule(root=str(synthetic_mnist), download=False, check_md5=False, val_size=50, val_timesteps=5)
    dm2.setup("fit")
    assert torch.equal(next(iter(dm2.val_dataloader()))[2], noise)
    # The labels follow the images: class k was drawn as a bar at row 4 + 2k.
    x, y = dm.train_set.tensors
    assert all(x[i, 0, 5 + 2 * int(y[i]), 10] == 255 for i in range(10))


def test_uncompressed_files_work_too(tmp_path, synthetic_mnist):
    raw = tmp_path / "plain" / "MNIST" / "raw"
    for gz in (synthetic_mnist / "MNIST" / "raw").glob("*.gz"):
        raw.mkdir(parents=True, exist_ok=True)
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    images, labels = load_mnist_split(tmp_path / "plain", "test", download=False, check_md5=False)
    assert images.shape == (100, 1, 28, 28) and labels.tolist()[:3] == [0, 1, 2]


def test_read_only_folder(synthetic_mnist):
    raw = synthetic_mnist / "MNIST" / "raw"
    for path in [*raw.iterdir(), raw, raw.parent]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        images, _ = load_mnist_split(synthetic_mnist, "train", download=True, check_md5=False)
        assert images.shape[0] == 300
        assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in raw.iterdir() if p.suffix == ".gz")
    finally:
        for path in [raw.parent, raw, *raw.iterdir()]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_missing_file_names_the_path_and_the_fix(synthetic_mnist):
    (synthetic_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MNISTFileError, match=r"t10k-labels-idx1-ubyte\.gz is missing: set data\.root"):
        load_mnist_split(synthetic_mnist, "test", download=False)


def test_truncated_file(synthetic_mnist):
    path = synthetic_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(MNISTFileError, match="train-images-idx3-ubyte.gz is truncated"):
        load_mnist_split(synthetic_mnist, "train", download=False, check_md5=False)
    path.write_bytes(path.read_bytes()[:1000])  # a cut-off gzip stream
    with pytest.raises(MNISTFileError, match="cannot be read"):
        load_mnist_split(synthetic_mnist, "train", download=False, check_md5=False)


def test_wrong_file_reports_expected_md5(synthetic_mnist):
    with pytest.raises(MNISTFileError, match="expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_mnist_split(synthetic_mnist, "train", download=False, check_md5=True)


@pytest.mark.slow
def test_uncompressed_copies_are_md5_checked_too(tmp_path, synthetic_mnist, real_mnist):
    plain = tmp_path / "plain" / "MNIST" / "raw"
    plain.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (plain / name).write_bytes(gzip.decompress((real_mnist / "MNIST" / "raw" / f"{name}.gz").read_bytes()))
    images, labels = load_mnist_split(tmp_path / "plain", "test", download=False, check_md5=True)
    assert images.shape == (10000, 1, 28, 28) and labels.bincount().tolist()[:2] == [980, 1135]
    # A valid IDX file that is not the official one: refused, with the MD5 of the official uncompressed file.
    (plain / "t10k-labels-idx1-ubyte").write_bytes(
        gzip.decompress((synthetic_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    official = "27ae3e4e09519cfbb04c329615203637"
    with pytest.raises(MNISTFileError, match=rf"t10k-labels-idx1-ubyte has MD5 \w+, expected {official}"):
        load_mnist_split(tmp_path / "plain", "test", download=False, check_md5=True)


def test_not_an_idx_file(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte", torch.zeros(3, 4).numpy())  # 2-d: wrong magic
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", torch.zeros(3).numpy())
    with pytest.raises(MNISTFileError, match="magic number 2051"):
        load_mnist_split(tmp_path, "test", download=False, check_md5=False)


@pytest.mark.slow
def test_real_mnist(real_mnist):
    images, labels = load_mnist_split(real_mnist, "test", download=False)
    assert images.shape == (10000, 1, 28, 28) and labels.bincount().tolist()[:2] == [980, 1135]
    assert os.access(real_mnist, os.R_OK)
