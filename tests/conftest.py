import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import ddpm.cli.resolvers  # noqa: F401  (the configs use its resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("DDPM_PROJECT_ROOT", str(ROOT))


def mnist_root() -> Path:
    """The real MNIST files: DDPM_DATA_ROOT, else ../shared/data beside the checkout (as CI lays it out), else the
    project's data/ folder (where train.py downloads them)."""
    if "DDPM_DATA_ROOT" in os.environ:
        return Path(os.environ["DDPM_DATA_ROOT"]).resolve()
    shared = ROOT.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else ROOT / "data"


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    root = mnist_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the MNIST files under {root}/MNIST/raw (set DDPM_DATA_ROOT)")
        pytest.skip(f"no MNIST files under {root}/MNIST/raw; set DDPM_DATA_ROOT")
    return root


def run_script(script: str, *args: str, check: bool = True, timeout: float = 900,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python <script> args...` (a file of the project root: train.py) or `python -m <script> args...` (a module:
    ddpm.commands.compare), from the project root (or `cwd`) as a user runs it; its output kept for the assertions."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    target = [str(ROOT / script)] if script.endswith(".py") else ["-m", script]
    proc = subprocess.run([sys.executable, *target, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """An IDX file as the MNIST distribution has them: magic (0x08 = uint8, ndim), big-endian sizes, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def synthetic_mnist(tmp_path) -> Path:
    return make_synthetic_mnist(tmp_path / "synthetic")


@pytest.fixture(scope="session")
def shared_synthetic_mnist(tmp_path_factory) -> Path:
    """One synthetic MNIST folder for every test that only reads it."""
    return make_synthetic_mnist(tmp_path_factory.mktemp("synthetic"))


def make_synthetic_mnist(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """A tiny MNIST-shaped folder: training and test images of class-dependent blobs (class k: a bar at row 4 + 2k)."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 50, size=(n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 4 + 2 * y : 8 + 2 * y, 6:22] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def compose_train(output_dir: Path, overrides: list[str] = (), config_name: str = "train"):
    """The training config (or another of conf/) as `python train.py <overrides>` composes it, writing into
    output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


# conf/debug/tiny.yaml (the tiny model, T = 100, 256 training images, on the CPU), trained 6 steps with two
# validations, for the runs in this process.
TINY = ["debug=tiny", "trainer.max_steps=6", "trainer.val_check_interval=3"]
# The same run of 4 steps, for the README's commands run as subprocesses.
FAST = ["debug=tiny", "trainer.max_steps=4", "trainer.val_check_interval=2"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
