"""Checks of config values, shared by the components' constructors and the commands, so that every refusal reads
the same: `key=value is invalid: use <what is allowed>`, raised as ConfigError (one `error:` line on the command
line). Each helper returns the value it accepted, integers as int (a command line's `64.0` is 64).

A component checks its own arguments in its constructor; the options of Lightning's Trainer and of the commands
(sample, evaluate), which have no constructor of ours, are checked in ddpm.cli.checks.
"""

import math
import re
from collections.abc import Iterable, Sequence

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


def is_number(value) -> bool:
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
    if not is_number(value) or int(value) != value or not (low is None or value >= low) or not (
            high is None or value <= high):
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
    if not is_number(value):
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
            visible = f"{count} CUDA device(s) are visible" if count else "no CUDA device is visible"
            raise refuse(key, value, f"auto or cpu: {visible}")
    return value
