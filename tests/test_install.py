"""A user without the checkout: the wheel holds every module and config, and its console scripts train and sample
from an empty working folder, writing there and not into the install."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ddpm.training.exported import QUICKSTART
from tests.conftest import make_synthetic_mnist

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ddpm-train", "ddpm-sample", "ddpm-evaluate", "ddpm-compare", "ddpm-nll", "ddpm-bench", "ddpm-judge",
            "ddpm-export", "ddpm-tune"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the venv's setuptools builds it, with no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT),
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("ddpm_mnist-*.whl")
    return found


def tracked(pattern: str) -> set[str]:
    listed = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def test_the_wheel_holds_every_module_and_config_and_the_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert tracked("ddpm/*.py") | tracked("hydra_plugins/*.py") <= names
    assert {f"ddpm/{path}" for path in tracked("conf/*.yaml")} <= names, "conf/ ships as the package data ddpm/conf"
    assert tracked("ddpm/pretrained/*") <= names, "the shipped model and the files that say what it is"
    assert not {n for n in names if n.startswith(("tests/", "scripts/", "docs/", "conf/"))}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{command} = ddpm.commands." in scripts for command in COMMANDS)


@pytest.mark.slow
def test_console_scripts_of_a_non_editable_install_train_and_sample_from_an_empty_folder(wheel, tmp_path):
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    data = make_synthetic_mnist(tmp_path / "data")
    # Only the install on the path, not the checkout; no DDPM_PROJECT_ROOT: outputs go to the working folder.
    env = {k: v for k, v in os.environ.items() if k not in ("DDPM_PROJECT_ROOT", "DDPM_DATA_ROOT")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1")

    def run(command, *args, status=0):
        proc = subprocess.run([sys.executable, str(target / "bin" / command), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == status, proc.stderr[-3000:]
        return proc

    run("ddpm-train", "model=tiny", "trainer.max_steps=2", "trainer.val_check_interval=2", "data.batch_size=16",
        "data.val_size=16", "callbacks.sample_grid.sampler.steps=2", f"data.root={data}", "data.check_md5=false")
    (ckpt,) = work.glob("outputs/train/runs/*/checkpoints/last.ckpt")
    run("ddpm-sample", f"ckpt={ckpt}", "n=4", "steps=2")
    assert list(work.glob("outputs/sample/**/samples.png")) and list(work.glob("outputs/sample/**/samples.pt"))
    run("ddpm-export", f"ckpt={ckpt}", "out=model.safetensors")
    run("ddpm-sample", "ckpt=model.safetensors", "n=4", "steps=2", "hydra.run.dir=exported")
    assert (work / "exported" / "samples.pt").is_file()
    # No ckpt: the model the package ships, or one line saying that this version ships none.
    shipped = target / "ddpm" / "pretrained" / QUICKSTART.name
    if QUICKSTART.is_file():
        assert shipped.read_bytes() == QUICKSTART.read_bytes()
        run("ddpm-sample", "n=100", "hydra.run.dir=shipped")
        assert (work / "shipped" / "samples.png").is_file()
    else:
        proc = run("ddpm-sample", "n=4", "hydra.run.dir=shipped", status=2)
        assert proc.stderr.strip() == ("error: no pretrained model ships with this version: "
                                       "pass ckpt=<checkpoint or exported file>") and not (work / "shipped").exists()
    assert not list(target.rglob("*.ckpt")) and not (target / "outputs").exists(), "nothing is written into the install"
