"""A real SLURM cluster (scripts/slurm_local.sh: one slurmctld and one slurmd on this machine, a `debug` partition):
a sweep through hydra/launcher=submitit_slurm with no launcher settings but the partition, DDP over two SLURM tasks
against one process that trains on the same global batches, a requeued job that resumes by itself, and no SLURM hint
outside a job. Skipped only where the daemons cannot start (the reason is printed); under CI they must."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, run_script
from ddp_replay import TWO_RANKS, check_two_ranks, largest_difference

pytestmark = pytest.mark.slow

SLURM_DIR = Path(os.environ.get("DDPM_SLURM_DIR", "/tmp/ddpm-slurm"))
SCRIPT = ROOT / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm():
    """The cluster .ci/run started, or one started here (and stopped again)."""
    env = {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    running = subprocess.run(["bash", SCRIPT, "status"], env=env, capture_output=True, text=True).returncode == 0
    if not running:
        proc = subprocess.run(["bash", SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            reason = f"the local SLURM cluster did not start (scripts/slurm_local.sh start): {proc.stderr[-800:]}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # for sbatch, squeue and scontrol in the commands and here
    yield env
    if not running:
        subprocess.run(["bash", SCRIPT, "stop"], env=env, capture_output=True, text=True)


def slurm_sweep(sweep: Path, *args: str, check: bool = True):
    return run_script("train.py", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", *args,
                      f"hydra.sweep.dir={sweep}", check=check)


def job_folders(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def job_logs(sweep: Path) -> str:
    return "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))


def test_sweep_of_two_jobs_with_only_the_partition(slurm, tmp_path, real_mnist):
    sweep = tmp_path / "sweep"
    slurm_sweep(sweep, "schedule=linear,cosine", *FAST, f"data.root={real_mnist}")
    jobs = job_folders(sweep)
    assert [("schedule-linear" in p.name, "schedule-cosine" in p.name) for p in jobs] == [(True, False), (False, True)]
    for job in jobs:
        assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    # a CPU trainer asks for no GPU (sbatch refuses any on a cluster without them) and one task of one CPU
    assert "--gpus-per-node=0" in script and "--ntasks-per-node=1" in script and "--cpus-per-task=1" in script


def test_ddp_over_two_slurm_tasks_equals_one_process_on_the_global_batch(slurm, tmp_path, real_mnist):
    sweep = tmp_path / "ddp"
    slurm_sweep(sweep, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *TWO_RANKS,
                f"data.root={real_mnist}")
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert "--ntasks-per-node=2" in script and "--gpus-per-node=0" in script
    logs = job_logs(sweep)
    # the ranks are SLURM's tasks: Lightning's SLURM environment, one process per task
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    [job] = job_folders(sweep)
    check_two_ranks(job, "SLURM DDP (2 tasks)")


def squeue(*fields: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-o", "|".join(fields)], capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_a_requeued_job_resumes_by_itself_and_ends_as_an_uninterrupted_run(slurm, tmp_path, real_mnist):
    """`scontrol requeue` is what SLURM does to a preempted job (PreemptMode=REQUEUE): SIGTERM to the job's tasks
    (StopCheckpoint saves last.ckpt after the step under way), then the job back into the queue; started again, train
    finds its own checkpoint (SLURM_RESTART_COUNT) and continues."""
    steps = ["debug=tiny", "trainer.max_steps=60", "trainer.val_check_interval=30", f"data.root={real_mnist}"]
    sweep = tmp_path / "requeued"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_slurm",
               "hydra.launcher.partition=debug", *steps, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        milestone = "milestone_step_000015.ckpt"
        while not list(sweep.glob(f"*/checkpoints/{milestone}")):  # a quarter of the run is done
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before it could be requeued"
            time.sleep(0.2)
        [[job_id, state]] = [row for row in squeue("%i", "%T") if row[1] == "RUNNING"]
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        # Back in the queue once its tasks ended, SLURM holds a requeued job for a while (BeginTime, 2 min here);
        # the test does not wait for that
        while [job_id, "PENDING"] not in squeue("%i", "%T"):
            assert proc.poll() is None and time.monotonic() < deadline, "the job was not requeued"
            time.sleep(0.5)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    [job] = job_folders(sweep)
    log = (job / "train.log").read_text()
    stopped = re.search(r"stopped at step (\d+) of 60", log)
    assert stopped and 15 <= int(stopped.group(1)) < 60, log[-2000:]
    assert re.search(r"restarted 1 time\(s\): resuming from .*last\.ckpt", log), log[-2000:]
    final = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 60 and int(final["averaging_state"]["n_averaged"]) == 60

    straight = tmp_path / "straight"
    run_script("train.py", *steps, f"hydra.run.dir={straight}")
    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    difference = largest_difference(final["state_dict"], expected)
    print(f"requeued at step {stopped.group(1)} and resumed vs uninterrupted: largest difference {difference:.3g}")
    for name, value in expected.items():
        torch.testing.assert_close(final["state_dict"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_no_slurm_hint_outside_a_job(slurm, tmp_path, real_mnist):
    """Lightning warns on any machine with `srun` that it is not used; outside a job a user means not to."""
    assert shutil.which("srun"), "slurm_local.sh installs srun"
    run = tmp_path / "run"
    env_without_job = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, f"data.root={real_mnist}",
                           f"hydra.run.dir={run}"], cwd=ROOT, env=env_without_job, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "srun" not in proc.stderr + proc.stdout
    refused = run_script("train.py", f"resume={run}", check=False)  # finished: refused in exactly one line
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
