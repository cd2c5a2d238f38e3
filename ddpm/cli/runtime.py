"""What the commands share and no layer of the model needs: where a command runs (the project's folders, the
device), its run folder (writable, the config saved once the checks pass, Lightning's messages in its log), and
how bad input ends (one `error:` line, exit status 2, the empty run folder removed)."""

import functools
import importlib.util
import logging
import os
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from ddpm.errors import ConfigError, DDPMError, Stopped

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
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    if HydraConfig.initialized():
        OmegaConf.save(HydraConfig.get().overrides.task, folder / "overrides.yaml")


# What a command needs that no default can give (`???` in its yaml), and an example of each.
REQUIRED = {"ckpt": "ckpt=outputs/train/runs/<run>/checkpoints/last.ckpt",
            "runs": "runs=outputs/train/multiruns/<date>_<time>"}


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


def exit_on_user_error(main):
    """Wrap an entry point: a DDPMError (also when Hydra's instantiate wrapped it) becomes one `error:` line on
    stderr and exit status 2, and the run folder Hydra made for the call goes away again (it is empty, since
    nothing is written before the checks); a run stopped by a signal, which has said so in its log, exits with
    128 + the signal number (a job of a -m sweep too: the signal stops the sweep); anything else keeps its
    traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Stopped as e:
            sys.exit(e.exit_status)
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
