"""Checks of config values, shared by the components' constructors and the commands, so that every refusal reads
the same: `key=value is invalid: use <what is allowed>`, raised as ConfigError (one `error:` line on the command
line). Each helper returns the value it accepted, integers as int (a command line's `64.0` is 64).

A component checks its own arguments in its constructor; the options of Lightning's Trainer and of the commands
(sample, evaluate), which have no constructor of ours, are checked by `check_train_options` and `check_request`.
"""

import math
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

from ddpm.errors import ConfigError


def show(value) -> str:
    """A value as the user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Sequence) and not isinstance(value, str):  # lists, tuples, OmegaConf's ListConfig
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


def refuse(key: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={show(value)} is invalid: use {allowed}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _or_null(allowed: str, optional: bool) -> str:
    return f"{allowed}, or null" if optional else allowed


def _integer_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer >= {low}"
    return "an integer" if high is None else f"an integer <= {high}"


def integer(key: str, value, low: int | None = None, high: int | None = None, optional: bool = False, hint: str = "",
            allowed: str | None = None):
    """An integer in [low, high] (either bound may be open-ended); None too when optional. `allowed` replaces the
    message's description of the range."""
    if value is None and optional:
        return None
    if allowed is None:
        allowed = _or_null(_integer_range(low, high), optional) + hint
    if not _is_number(value) or int(value) != value or (low is not None and value < low) or (high is not None and value > high):
        raise refuse(key, value, allowed)
    return int(value)


def positive_int(key: str, value, optional: bool = False, hint: str = ""):
    return integer(key, value, low=1, optional=optional, hint=hint)


def number(key: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, optional: bool = False, hint: str = ""):
    """A finite number in the interval from low to high, each end closed unless *_open; None too when optional."""
    if value is None and optional:
        return None
    if low is not None and high is not None:
        allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        allowed = f"a number {'<' if high_open else '<='} {high:g}"
    else:
        allowed = "a finite number"
    allowed = _or_null(allowed, optional) + hint
    if not _is_number(value):
        raise refuse(key, value, allowed)
    if low is not None and (value < low or (low_open and value == low)):
        raise refuse(key, value, allowed)
    if high is not None and (value > high or (high_open and value == high)):
        raise refuse(key, value, allowed)
    return value


def probability(key: str, value, high_open: bool = False, hint: str = ""):
    return number(key, value, 0, 1, high_open=high_open, hint=hint)


def one_of(key: str, value, allowed: Iterable, hint: str = ""):
    allowed = list(allowed)
    if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
        raise refuse(key, value, f"one of {', '.join(show(a) for a in allowed)}{hint}")
    return value


def boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise refuse(key, value, "true or false")
    return value


def text(key: str, value, optional: bool = False):
    """A path or a name (the command line makes `data.root=2024` an int: it is a folder name all the same)."""
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise refuse(key, value, _or_null("a path or name", optional))
    return value


def device(key: str, value) -> str:
    """auto, cpu, cuda or cuda:N; a CUDA device must be visible."""
    allowed = "auto, cpu, cuda or cuda:N"
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise refuse(key, value, allowed)
    if value.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
        index = int(value.partition(":")[2] or 0)
        if index >= count:
            raise refuse(key, value, f"auto or cpu: {'no CUDA device is visible' if not count else f'{count} CUDA device(s) are visible'}")
    return value


def lightning_precisions() -> list[str]:
    """The `precision` values Lightning accepts, read from its own type (typed as 16, "16-mixed", "bf16", ...)."""
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    values = [str(value) for kind in get_args(_PRECISION_INPUT) for value in get_args(kind)]
    return list(dict.fromkeys(values))


@contextmanager
def refused_by_lightning(group: str):
    """Lightning checks accelerator, devices and strategy itself, against the machine, when the Trainer is built,
    and its messages name the argument (`Trainer(devices=0)` ...); they become one line instead of a traceback."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (InstantiationException, MisconfigurationException, ValueError, TypeError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise
        raise ConfigError(f"{group}: Lightning refuses these settings: {' '.join(str(cause).split())}") from e


def check_train_options(cfg) -> None:
    """The options of `python train.py` that no constructor of ours receives: the seed, Lightning's Trainer
    arguments that a user types often, and the callbacks that Lightning provides. Lightning would refuse some of
    these with a traceback, and accept others (a negative max_steps) with surprising results."""
    # seed_everything takes 32-bit seeds.
    integer("seed", cfg.get("seed"), low=0, high=2**32 - 1)
    trainer = cfg.trainer
    for key in ("max_steps", "max_epochs"):
        # 0 would end the run before its first step; of the negative values Lightning reads only -1 as "no limit".
        value = trainer.get(key)
        if value is not None and value != -1:
            integer(f"trainer.{key}", value, low=1, hint=", or -1 for no limit")
    interval = trainer.get("val_check_interval")
    if interval is not None and not (isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1):
        number("trainer.val_check_interval", interval, 0, 1, low_open=True,
               hint=" (a fraction of an epoch), or an integer >= 1 (every N steps)")
    integer("trainer.check_val_every_n_epoch", trainer.get("check_val_every_n_epoch"), low=1, optional=True)
    integer("trainer.num_sanity_val_steps", trainer.get("num_sanity_val_steps", 2), low=-1, hint=" (-1: all)")
    integer("trainer.log_every_n_steps", trainer.get("log_every_n_steps", 50), low=1)
    integer("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), low=1)
    number("trainer.gradient_clip_val", trainer.get("gradient_clip_val"), low=0, optional=True, hint=" (0 or null: no clipping)")
    one_of("trainer.gradient_clip_algorithm", trainer.get("gradient_clip_algorithm", "norm"), ("norm", "value"))
    one_of("trainer.precision", str(trainer.get("precision", "32-true")), lightning_precisions())
    boolean("trainer.enable_progress_bar", trainer.get("enable_progress_bar", True))
    callbacks = cfg.get("callbacks") or {}
    if callbacks.get("ema"):
        number("callbacks.ema.decay", callbacks.ema.get("decay"), 0, 1, low_open=True, high_open=True, hint=", e.g. 0.999")
    if callbacks.get("periodic_checkpoint"):
        positive_int("callbacks.periodic_checkpoint.every_n_train_steps",
                     callbacks.periodic_checkpoint.get("every_n_train_steps"), optional=True)


def check_request(cfg) -> None:
    """The options of the commands that sample from a checkpoint (sample, evaluate), each checked when the command
    has it; before the checkpoint is read or anything written."""
    positive_int("n", cfg.n, hint=", e.g. n=100")
    number("guidance", cfg.guidance, low=0, hint=" (0: no guidance; 2 is a good start)")
    integer("seed", cfg.seed, low=0, high=2**32 - 1)
    digit = cfg.get("digit")
    if digit is not None and (not _is_number(digit) or digit not in range(10)):
        raise ConfigError(f"digit={show(digit)} is not a class label: use 0-9, or drop digit= to cycle through all ten")
    for key in ("ema", "clip_x0", "unconditional", "trajectory"):
        if key in cfg:
            boolean(key, cfg[key])
    for key in ("batch_size", "nrow"):
        if key in cfg:
            positive_int(key, cfg[key])
    if "trajectory_frames" in cfg:
        integer("trajectory_frames", cfg.trajectory_frames, low=2)
    device("device", cfg.get("device", "auto"))
