"""What the commands share and no layer of the model needs: where a command runs (the project's folders, the
device), its run folder (writable, the config saved once the checks pass, Lightning's messages in its log), and
how bad input ends (one `error:` line, exit status 2, the empty run folder removed)."""

import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from ddpm.errors import ConfigError, DDPMError, FolderInUseError, Stopped
from ddpm.files import write_text

PACKAGE = Path(__file__).resolve().parents[1]
# A wheel carries the configs inside the package (pyproject.toml maps conf/ to ddpm/conf); a checkout keeps them in
# conf/ beside the package, their one source.
CONF = next((p for p in (PACKAGE / "conf", PACKAGE.parent / "conf") if p.is_dir()), PACKAGE / "conf")

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """auto = the GPU when there is one; `device=cuda` on a machine without one is refused in one line."""
    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"device={name} is unknown: use one of {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible: use device=cpu or device=auto")
    return torch.device(name)


def installed(module: str) -> bool:
    """An optional package (a Hydra plugin, Optuna) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package (hydra_plugins) is missing too
        return False


def check_writable(folder: str | Path) -> None:
    folder = existing = Path(folder).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise ConfigError(
            f"output folder {folder} cannot be written: {existing} is not a writable folder; "
            f"choose another with hydra.run.dir=... (hydra.sweep.dir=... with -m) or paths.log_dir=..."
        )


def in_slurm_job() -> bool:
    """A task of a SLURM batch job (sbatch, submitit), by Lightning's rule: an interactive allocation (`srun --pty
    bash`, job name bash or interactive) is left to the other environments."""
    return "SLURM_NTASKS" in os.environ and SLURMEnvironment.job_name() not in ("bash", "interactive")


def cluster_plugins() -> list:
    """The cluster environment for train's Trainer, as entries of its `plugins`. In a SLURM job: SLURM's (the ranks
    are the job's tasks), without Lightning's auto-requeue, whose SIGUSR1 handler saves a checkpoint wherever the
    signal lands, in the middle of a step too; a requeued job resumes from the checkpoint StopCheckpoint saved
    between two steps instead (requeued_checkpoint). Elsewhere none: Lightning finds torchrun's environment or
    its own. Lightning's SLURM detection, which also runs at every fit that starts without a checkpoint, warns on
    any machine with `srun` that it is not used: outside a job that is intended, so that one warning is ignored."""
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used",
                            category=PossibleUserWarning)
    return [SLURMEnvironment(auto_requeue=False)] if in_slurm_job() else []


def requeued_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's own last.ckpt when this is a SLURM job that was requeued (preempted, `scontrol requeue`, or
    submitit's requeue at the time limit): the job starts again with the same config and folder, and continues."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if in_slurm_job() and int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0 and path.is_file():
        logging.getLogger(__name__).info(
            f"SLURM job {os.environ.get('SLURM_JOB_ID')} restarted {os.environ['SLURM_RESTART_COUNT']} time(s): "
            f"resuming from {path}")
        return path
    return None


def _holder(lock: Path) -> str:
    """Who holds a run folder's lock, as its holder wrote it: "process PID on HOST"."""
    try:
        pid, host = lock.read_text().split()
    except (OSError, ValueError):  # the holder has not written it yet, or just let the lock go
        return "another process"
    return f"process {pid}" + ("" if host == socket.gethostname() else f" on {host}")


def _take(lock: Path, refusal: Callable[[str], str]) -> int:
    """The descriptor of `lock`, held exclusively. A lock file whose holder let it go and removed it while this
    process opened it is another file than the one at the path now: then again with the new one."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUseError(refusal(_holder(lock))) from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_folder_lock(folder: str | Path, refusal: Callable[[str], str]):
    """One process at a time in a run folder: an exclusive flock on `folder/.lock`, held while the block runs.
    The kernel drops it when the process ends, so a crashed run's folder is free at once; the file says who holds
    it ("PID HOST"), for `refusal(holder)` to name. Only rank 0 of a DDP run takes it (its other ranks train into
    the same folder)."""
    if rank_zero_only.rank != 0:
        yield
        return
    lock = Path(folder) / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _take(lock, refusal)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: a process waiting on this file sees it is stale
        os.close(fd)


LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def lightning_messages_to_stdout() -> None:
    """Lightning's own console handlers write its info lines (the devices it found, ...) to stderr, where a refused
    command must leave its one error line alone: until the run's log takes them over, they go to stdout."""
    for name in LIGHTNING_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stdout)


def log_lightning_into_run_log() -> None:
    """Lightning, imported before Hydra configures logging, gives its loggers console handlers of their own and
    stops them from propagating, so its messages never reached the run's log file (train.log). From here on they
    go through Hydra's handlers: the console and the log file."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


@rank_zero_only
def save_run_config(cfg: DictConfig) -> None:
    """What Hydra would have written to `.hydra/`, written once the run passed its checks; the log file (opened on
    its first message) starts here too, with Lightning's messages, so that a refused call leaves no log behind."""
    log_lightning_into_run_log()
    folder = Path(cfg.paths.output_dir) / ".hydra"
    write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():  # what resume= replays: never half of it
        write_text(folder / "overrides.yaml", OmegaConf.to_yaml(HydraConfig.get().overrides.task))


# What a command needs that no default can give (`???` in its yaml), and an example of each.
REQUIRED = {"ckpt": "ckpt=outputs/train/runs/<run>/checkpoints/last.ckpt",
            "runs": "runs=outputs/train/multiruns/<date>_<time>", "out": "out=<name>.safetensors"}


def user_error(error: BaseException) -> DDPMError | None:
    """The DDPMError behind `error`, also when Hydra's instantiate wrapped it in its own exception; a required
    setting left out is one too."""
    while error is not None and not isinstance(error, DDPMError):
        if isinstance(error, MissingMandatoryValue):
            key = error.full_key
            return ConfigError(f"{key} is required: pass {REQUIRED.get(key, f'{key}=...')}")
        error = error.__cause__
    return error


def remove_empty(folder: Path) -> None:
    """The run folder of a refused call and the parents Hydra made for it inside the working folder (outputs/sample/
    runs/), each only while empty: a resumed run's folder, or one that failed after its checks, stays."""
    cwd = Path.cwd().resolve()
    folder = folder.resolve()
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
        if folder == cwd or cwd not in folder.parents:
            return


# The stop of the job under way, from the task's wrapper to the Hydra callback that ends the process after the job.
_stops: list[Stopped] = []


def exit_if_stopped() -> None:
    """After a job: a signal stopped it, so the process (a -m sweep too) exits with 128 + the signal number."""
    if _stops:
        sys.exit(_stops.pop().exit_status)


def exit_on_user_error(main):
    """Wrap an entry point: a DDPMError (also when Hydra's instantiate wrapped it) becomes one `error:` line on
    stderr and exit status 2, and the run folder Hydra made for the call goes away again (it is empty, since
    nothing is written before the checks); a run stopped by a signal, which has said so in its log, exits with
    128 + the signal number: as a job of a sweep launched here, it raises on, so that Hydra records the job as failed
    (a sweeper too), and ddpm.cli.app.ExitWhenStopped ends the process after it; anything else keeps its
    traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Stopped as e:
            # A SLURM job ends with the signal's status and no result: SLURM's record of it holds, so that a job it
            # requeued (preemption) is finished by its next start, whose result the sweep then gets.
            if not HydraConfig.initialized() or in_slurm_job():
                sys.exit(e.exit_status)
            _stops.append(e)
            raise
        except Exception as e:
            cause = user_error(e)
            if cause is None:
                raise
            folder = OmegaConf.select(HydraConfig.get(), "runtime.output_dir") if HydraConfig.initialized() else None
            if folder:
                remove_empty(Path(folder))
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)

    return wrapper
