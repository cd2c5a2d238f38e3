"""The GPU path in one run (scripts/gpu_check.sh): `model=base` trained with `trainer=gpu` (bf16-mixed, DDP over
every GPU when there are several) for a few hundred steps, its training images/s and peak memory (ddpm-bench, the
same model in bf16), a sampling on the GPU and on the CPU with the same seed, compared, and one JSON with all of it.
Every step is a plain command of this repository, run as a process, with a deadline; what did not finish in time is
said in the JSON, which is written in any case.

    python scripts/gpu_check.py --out gpu_check.json [--steps 300] [--data ROOT]
    python scripts/gpu_check.py --smoke --out /tmp/smoke.json   # the tiny model on the CPU: tests this script
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Sampled on both devices: deterministic DDIM, so that the two differ only by their arithmetic.
SAMPLE = ["sampler=ddim", "sampler.steps=20", "n=20", "seed=0", "guidance=1.5"]
# GPU and CPU kernels sum in other orders (and cuDNN picks its algorithms): over 20 DDIM steps of the 11M UNet
# pixels in [0, 1] are expected to move by 1e-3 or so; a digit that changed would move by far more than this.
MEAN_TOLERANCE, MAX_TOLERANCE = 5e-3, 0.15


def parse(argv=None) -> argparse.Namespace:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--out", type=Path, required=True, help="the JSON to write")
    args.add_argument("--steps", type=int, default=300, help="training steps (at least 8)")
    args.add_argument("--data", default=os.environ.get("DDPM_DATA_ROOT", "data"), help="folder holding MNIST/raw")
    args.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"), help="run folders")
    args.add_argument("--deadline", type=float, default=450, help="seconds for everything (8 min with start-up)")
    args.add_argument("--smoke", action="store_true", help="tiny model on the CPU, to test this script")
    opts = args.parse_args(argv)
    if opts.steps < 8:
        args.error(f"--steps={opts.steps}: use at least 8 (the throughput is timed between two milestones)")
    if not opts.smoke and not torch.cuda.is_available():
        args.error("no CUDA GPU is visible: run on a GPU machine, or --smoke to test this script on the CPU")
    return opts


class Runner:
    """Commands as processes against one deadline; each one's wall time and the tail of its output kept."""

    def __init__(self, deadline: float):
        self.end = time.monotonic() + deadline
        self.steps: dict[str, dict] = {}

    def __call__(self, name: str, *args: str) -> bool:
        left = self.end - time.monotonic()
        if left < 10:
            self.steps[name] = {"ok": False, "error": "no time left"}
            return False
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=left)
            ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            ok, tail = False, "timed out at the deadline"
        self.steps[name] = {"ok": ok, "wall_s": round(time.monotonic() - start, 1), **({} if ok else {"error": tail})}
        return ok


def train_speed(run: Path, steps: int, images_per_step: int) -> float:
    """Training images/s between the milestones at 1/4 and 3/4 of the run: no start-up, no validation."""
    first, last = (run / "checkpoints" / f"milestone_step_{round(f * steps):06d}.ckpt" for f in (0.25, 0.75))
    seconds = last.stat().st_mtime - first.stat().st_mtime
    return (round(0.75 * steps) - round(0.25 * steps)) * images_per_step / seconds


def compare_samples(gpu: Path, cpu: Path) -> dict:
    a, b = (torch.load(p / "samples.pt", weights_only=True) for p in (gpu, cpu))
    difference = (a["images"].float() - b["images"].float()).abs()
    result = {"images": len(a["images"]), "same_labels": bool(torch.equal(a["labels"], b["labels"])),
              "mean_abs_difference": float(difference.mean()), "max_abs_difference": float(difference.max())}
    result["ok"] = (result["same_labels"] and result["mean_abs_difference"] <= MEAN_TOLERANCE
                    and result["max_abs_difference"] <= MAX_TOLERANCE)
    return result


def main(argv=None) -> int:
    opts = parse(argv)
    work, gpus = opts.work.resolve(), torch.cuda.device_count()
    device = "cpu" if opts.smoke else "cuda"
    model = "tiny" if opts.smoke else "base"
    trainer = ["trainer=cpu", "trainer.devices=1"] if opts.smoke else ["trainer=gpu"]  # gpu: every GPU, bf16-mixed
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(), "torch": torch.__version__,
              "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)], "smoke": opts.smoke,
              "tolerance": {"mean": MEAN_TOLERANCE, "max": MAX_TOLERANCE}}
    run = Runner(opts.deadline)
    batch = 32 if opts.smoke else 128
    train_dir = work / "train"
    world = 1 if opts.smoke else max(gpus, 1)
    if run("train", "train.py", f"model={model}", *trainer, f"trainer.max_steps={opts.steps}",
           f"trainer.val_check_interval={opts.steps}", f"data.batch_size={batch}", f"data.root={opts.data}",
           *(["data.train_size=512", "schedule.timesteps=100"] if opts.smoke else []), f"hydra.run.dir={train_dir}"):
        report["train"] = {"model": model, "steps": opts.steps, "batch_size_per_process": batch, "processes": world,
                           "precision": "32-true" if opts.smoke else "bf16-mixed",
                           "images_per_s": round(train_speed(train_dir, opts.steps, batch * world), 1)}
    bench_dir = work / "bench"
    if run("bench", "-m", "ddpm.commands.bench", f"models=[{model}]", "variants=[bf16]", f"variant_models=[{model}]",
           f"device={device}", "train_repeats=5", "samplers={}", "data.root=null", f"hydra.run.dir={bench_dir}"):
        report["bench"] = json.loads((bench_dir / "bench.json").read_text())
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    # the GPU's digits against the CPU's; --smoke, without a GPU: two samplings on the CPU, which must agree exactly
    first = "cpu_first" if opts.smoke else "cuda"
    sampled = [run(f"sample_{name}", "sample.py", f"ckpt={ckpt}", f"device={name.removesuffix('_first')}", *SAMPLE,
                   f"hydra.run.dir={work / name}") for name in (first, "cpu")] if ckpt.is_file() else []
    if sampled and all(sampled):
        report["same_seed"] = compare_samples(work / first, work / "cpu")
    report["steps"] = run.steps
    report["ok"] = all(s["ok"] for s in run.steps.values()) and report.get("same_seed", {}).get("ok", False)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report.get(k) for k in ("ok", "train", "same_seed")}, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
