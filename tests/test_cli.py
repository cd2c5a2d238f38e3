"""The command lines of the README, run as subprocesses: a two-schedule sweep, sampling, DDP on two CPU processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, mnist_root

FAST = [
    "model=tiny",
    "schedule.timesteps=100",
    "trainer.accelerator=cpu",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
    "data.train_size=256",
    "data.val_size=64",
    "data.batch_size=32",
    "callbacks.sample_grid.sampler.steps=5",
]


def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def data_root():
    root = mnist_root()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST files under {root}; set DDPM_DATA_ROOT")
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("sweep")
    run("train.py", "-m", "schedule=linear,cosine", *FAST, f"data.root={data_root}", f"hydra.sweep.dir={out}")
    return out


def test_two_schedule_sweep_gives_two_run_folders(sweep):
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name[:2] for p in runs] == ["0_", "1_"]
    assert all("model-tiny" in p.name and "data.root" not in p.name for p in runs)
    assert ["schedule-linear" in p.name for p in runs] == [True, False]
    assert ["schedule-cosine" in p.name for p in runs] == [False, True]
    for run_dir in runs:
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        assert (run_dir / "grids" / "step_000004.png").is_file()
        schedule = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["schedule"]
        assert ("Cosine" in schedule["_target_"]) == ("cosine" in run_dir.name)


def ckpt_of(sweep, schedule="linear"):
    return next(p for p in sweep.iterdir() if f"schedule-{schedule}" in p.name) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_writes_grid_and_is_deterministic(sweep, tmp_path, sampler):
    outputs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        run("sample.py", f"ckpt={ckpt_of(sweep)}", "n=20", f"sampler={sampler}", "steps=10", "seed=3", f"hydra.run.dir={out}")
        assert (out / "samples.png").is_file()
        outputs.append(torch.load(out / "samples.pt", weights_only=True))
    a, b = outputs
    assert a["images"].shape == (20, 1, 28, 28) and a["images"].min() >= 0 and a["images"].max() <= 1
    assert a["labels"].tolist() == [i % 10 for i in range(20)]
    assert torch.equal(a["images"], b["images"])


def test_sample_one_digit_with_trajectory(sweep, tmp_path):
    run("sample.py", f"ckpt={ckpt_of(sweep, 'cosine')}", "n=5", "digit=7", "steps=5", "trajectory=true", f"hydra.run.dir={tmp_path}")
    samples = torch.load(tmp_path / "samples.pt", weights_only=True)
    assert samples["labels"].tolist() == [7] * 5
    assert (tmp_path / "trajectory.png").is_file() and (tmp_path / "trajectory.gif").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["n=0"], "error: n=0"),
        (["digit=12"], "error: digit=12 is not a class label"),
        (["steps=101"], "error: steps=101 exceeds the schedule's 100 timesteps"),
        (["guidance=-1"], "error: guidance=-1"),
    ],
)
def test_sample_bad_input_is_one_line(sweep, tmp_path, args, message):
    proc = run("sample.py", f"ckpt={ckpt_of(sweep)}", *args, f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(message)
    assert not (tmp_path / "out" / "samples.pt").exists()


def test_missing_checkpoint(tmp_path):
    proc = run("sample.py", f"ckpt={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_ddp_on_two_cpu_processes(tmp_path, data_root):
    out = tmp_path / "ddp"
    proc = run("train.py", "trainer=ddp", "trainer.devices=2", *FAST, f"data.root={data_root}", f"hydra.run.dir={out}")
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert (out / "grids" / "step_000004.png").is_file()


def test_ddp_under_multirun_is_refused(tmp_path, data_root):
    proc = run("train.py", "-m", "trainer=ddp", "trainer.devices=2", *FAST, f"data.root={data_root}", f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "cannot run under -m" in proc.stderr.strip().splitlines()[-1]
    assert not list(Path(tmp_path).rglob("*.ckpt"))
