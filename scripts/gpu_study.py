"""How docs/compare/ was measured: the study's runs and scores on one GPU, many processes at once.

Every job is a plain command of this repository: one train.py per run, with the overrides of one job of the sweeps
in docs/compare/README.md, then ddpm.commands.compare on the run folder; the GPU only runs them in parallel. Training
jobs start in order of priority and none after TRAIN_DEADLINE; each finished run is scored at once; at the end
one report per group is drawn from the cached scores. Everything left running at KILL_DEADLINE is stopped
(its last.ckpt every 100 steps stays resumable). Output: $OUT/*.tgz and log.txt.

    python scripts/gpu_study.py [--smoke]     # --smoke: tiny models on the CPU, to test this script
"""

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
START = time.time()
args = argparse.ArgumentParser()
args.add_argument("--smoke", action="store_true")
args.add_argument("--work", default="/tmp/study")
args.add_argument("--parallel", type=int, default=12)
args.add_argument("--train-deadline", type=float, default=330)
args.add_argument("--score-deadline", type=float, default=440)
args.add_argument("--kill-deadline", type=float, default=480)
args.add_argument("--final-deadline", type=float, default=530)
opts = args.parse_args()
WORK = Path(opts.work)
OUT = Path(os.environ.get("OUT", "/tmp/study_out"))
OUT.mkdir(parents=True, exist_ok=True)
LOG = open(OUT / "log.txt", "a")


def say(text: str) -> None:
    line = f"[{time.time() - START:6.1f}s] {text}"
    print(line, flush=True)
    LOG.write(line + "\n")
    LOG.flush()


DEVICE = [] if opts.smoke else ["trainer.accelerator=gpu", "trainer.devices=1"]
TINY = ["model=tiny", "trainer.max_steps=8", "data.train_size=512", "data.batch_size=32", "data.val_size=64",
        "callbacks.sample_grid.sampler.steps=5", "schedule.timesteps=50"] if opts.smoke else []
TINY_DEFAULT = TINY + (["trainer.max_steps=12"] if opts.smoke else [])
COMMON = ["trainer.enable_progress_bar=false", *DEVICE]
SCORE_TINY = ["n=20", "nll.n=10", "grid.steps=3", "batch_size=20", "floor_subsets=2"] if opts.smoke else []


def study(schedule, gamma, seed):
    return ("study", f"{schedule}_{'eps' if gamma == 'null' else 'minsnr5'}_seed{seed}",
            ["experiment=quickstart", f"schedule={schedule}", f"module.min_snr_gamma={gamma}", f"seed={seed}", *TINY])


def default(schedule, seed):
    return ("default", f"{schedule}_seed{seed}", [f"schedule={schedule}", f"seed={seed}", *TINY_DEFAULT])


def notebook(schedule, seed):
    return ("notebook", f"{schedule}_T300_seed{seed}", ["experiment=notebook_setting", f"schedule={schedule}",
                                                         f"seed={seed}", *TINY, "schedule.timesteps=300"])


def sigmoid(gamma, seed):
    return ("sigmoid", f"sigmoid_{'eps' if gamma == 'null' else 'minsnr5'}_seed{seed}",
            ["experiment=quickstart", "schedule=sigmoid", f"module.min_snr_gamma={gamma}", f"seed={seed}", *TINY])


POINTS = {"study": "study", "sigmoid": "study", "default": "default_budget", "notebook": "notebook"}
if opts.smoke:
    POINTS = dict.fromkeys(POINTS, "quick")
TRAIN = (
    [default(s, 0) for s in ("linear", "cosine")]
    + [study(s, g, seed) for seed in (0, 1, 2) for s in ("linear", "cosine") for g in ("null", "5")]
    + [notebook(s, 0) for s in ("linear", "cosine")] + [sigmoid(g, 0) for g in ("null", "5")]
    + [default(s, 1) for s in ("linear", "cosine")]
    + [notebook(s, seed) for seed in (1, 2) for s in ("linear", "cosine")]
    + [sigmoid(g, seed) for seed in (1, 2) for g in ("null", "5")]
    + [default(s, 2) for s in ("linear", "cosine")]
)
if opts.smoke:
    TRAIN = TRAIN[:3] + [notebook("linear", 0)]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return e


def launch(kind: str, group: str, name: str, command: list[str]) -> dict:
    logfile = WORK / "logs" / f"{kind}_{group}_{name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(command, cwd=ROOT, env=env(), stdout=open(logfile, "w"), stderr=subprocess.STDOUT)
    say(f"start {kind} {group}/{name}")
    return {"kind": kind, "group": group, "name": name, "proc": proc, "log": logfile, "start": time.time()}


def train_job(group, name, overrides):
    run = WORK / group / name
    return launch("train", group, name, [sys.executable, "train.py", *overrides, *COMMON, f"hydra.run.dir={run}"])


def score_job(group, name):
    run = WORK / group / name
    return launch("score", group, name, [sys.executable, "-m", "ddpm.commands.compare", f"runs={run}",
                                         f"plan={POINTS[group]}", f"hydra.run.dir={WORK / 'reports' / group / name}",
                                         *SCORE_TINY])


def preflight() -> None:
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"], check=False)
    say(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, python {sys.version.split()[0]}")
    run = WORK / "preflight"
    tiny = ["model=tiny", "trainer.max_steps=4", "trainer.val_check_interval=2", "data.train_size=256",
            "data.batch_size=32", "data.val_size=64", "callbacks.sample_grid.sampler.steps=3", "schedule.timesteps=40",
            *COMMON]
    for command in ([sys.executable, "train.py", *tiny, f"hydra.run.dir={run}"],
                    [sys.executable, "-m", "ddpm.commands.compare", f"runs={run}", "plan=quick", "n=20", "nll.n=10",
                     "grid.steps=3", "batch_size=20", f"hydra.run.dir={WORK / 'preflight_report'}"]):
        proc = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True)
        if proc.returncode != 0:
            say("PREFLIGHT FAILED: " + " ".join(command[1:4]))
            say(proc.stdout[-3000:] + proc.stderr[-5000:])
            pack()
            sys.exit(1)
    say("preflight ok")


def strip(ckpt: Path, to: Path) -> None:
    """Only what load_module needs: the EMA weights and the config (a tenth of the full checkpoint)."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    to.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: saved[k] for k in ("state_dict", "hyper_parameters", "global_step", "epoch")}, to)


def pack() -> None:
    def small(info):
        return None if info.name.endswith((".ckpt", ".partial")) else info

    with tarfile.open(OUT / "results.tgz", "w:gz") as tar:
        if WORK.exists():
            tar.add(WORK, arcname="study", filter=small)
    bundles = {"ckpts_study.tgz": [], "ckpts_default.tgz": [], "ckpts_other.tgz": []}
    for run in sorted(p for p in WORK.glob("*/*") if (p / "checkpoints" / "last.ckpt").exists()):
        group, name = run.parent.name, run.name
        finished = (run / "DONE").exists()
        if group == "default":
            bundle = "ckpts_default.tgz"
        elif name.endswith("seed0"):
            bundle = "ckpts_study.tgz" if group == "study" else "ckpts_other.tgz"
        else:
            continue
        target = WORK / "stripped" / group / name / "checkpoints" / "last.ckpt"
        if finished:
            strip(run / "checkpoints" / "last.ckpt", target)
        else:  # unfinished: the whole checkpoint, so that the run can be resumed elsewhere
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(run / "checkpoints" / "last.ckpt", target)
        bundles[bundle].append((target, f"{group}/{name}/checkpoints/last.ckpt"))
    for bundle, files in bundles.items():
        with tarfile.open(OUT / bundle, "w:gz") as tar:
            size = 0
            for path, arcname in files:
                size += path.stat().st_size
                if size > 15 * 2**20:
                    say(f"{bundle}: left out {arcname} (size limit)")
                    continue
                tar.add(path, arcname=arcname)
    say("packed: " + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in sorted(OUT.iterdir())))


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    preflight()
    queue, running, scored = list(TRAIN), [], []
    while queue or running:
        now = time.time() - START
        for job in list(running):
            code = job["proc"].poll()
            if code is None:
                continue
            running.remove(job)
            seconds = time.time() - job["start"]
            say(f"end {job['kind']} {job['group']}/{job['name']}: exit {code} after {seconds:.0f} s")
            if code != 0:
                say(job["log"].read_text()[-2500:])
            elif job["kind"] == "train":
                (WORK / job["group"] / job["name"] / "DONE").write_text(f"{seconds:.1f}\n")
                queue.insert(0, ("score", job["group"], job["name"]))  # score before starting more training
            else:
                scored.append((job["group"], job["name"]))
        if now > opts.kill_deadline:
            for job in running:
                job["proc"].kill()
                say(f"killed {job['kind']} {job['group']}/{job['name']} at the deadline")
            break
        while queue and len(running) < opts.parallel:
            item = queue[0]
            if item[0] == "score":
                if now > opts.score_deadline:
                    queue.pop(0)
                    continue
                running.append(score_job(item[1], item[2]))
            else:
                if now > opts.train_deadline:
                    say(f"not started (deadline): {len(queue)} jobs, e.g. {item[0]}/{item[1]}")
                    queue = [q for q in queue if q[0] == "score"]
                    continue
                running.append(train_job(*item))
            queue.pop(0)
        time.sleep(1)

    finals = []
    for group in POINTS:
        runs = [WORK / g / n for g, n in scored if g == group]
        if runs:
            finals.append(launch("report", group, "all", [
                sys.executable, "-m", "ddpm.commands.compare", f"runs=[{','.join(map(str, runs))}]",
                f"plan={POINTS[group]}", f"hydra.run.dir={WORK / 'reports' / group / 'all'}", *SCORE_TINY]))
    for job in finals:
        left = opts.final_deadline - (time.time() - START)
        try:
            job["proc"].wait(timeout=max(left, 1))
            say(f"report {job['group']}: exit {job['proc'].returncode}")
            if job["proc"].returncode:
                say(job["log"].read_text()[-2500:])
        except subprocess.TimeoutExpired:
            job["proc"].kill()
            say(f"report {job['group']}: killed at the deadline")
    pack()


if __name__ == "__main__":
    main()
