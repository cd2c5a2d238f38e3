"""The points a compare report scores: (sampler, steps, guidance, guidance interval) at the last checkpoint or also at
the milestones, for every seed or the first of an arm. A plan (conf/plan/) lists groups of them; every value is
checked here before anything is sampled."""

from collections.abc import Iterable
from dataclasses import dataclass

from ddpm.errors import ConfigError
from ddpm.sampling.guidance import check_interval

POINT_KEYS = {"sampler", "steps", "guidance", "guidance_interval", "checkpoints", "seeds"}


@dataclass(frozen=True)
class Point:
    sampler: str  # a yaml of conf/sampler/
    steps: int | str  # a number, or "T": all of the run's timesteps
    guidance: float
    checkpoints: str  # last | milestones
    seeds: str  # all | first
    guidance_interval: tuple[float, float] | None = None  # guided only at log-SNR in [lo, hi]; None: every step


def expand_points(points, samplers: Iterable[str]) -> list[Point]:
    """The configured point groups as single points, each once; `samplers` are the names a point may use."""
    samplers = list(samplers)
    expanded = []
    for group in points:
        unknown = set(group) - POINT_KEYS
        if unknown:
            raise ConfigError(f"points entry {dict(group)} has unknown keys {sorted(unknown)}: "
                              f"use {sorted(POINT_KEYS)}")
        sampler = group.get("sampler")
        if sampler not in samplers:
            raise ConfigError(f"points: sampler={sampler} is unknown: use one of {', '.join(samplers)}")
        checkpoints, seeds = group.get("checkpoints", "last"), group.get("seeds", "all")
        # One interval per group (it is a list itself); a group per interval to compare several.
        interval = check_interval("points: guidance_interval", group.get("guidance_interval"))
        if checkpoints not in ("last", "milestones"):
            raise ConfigError(f"points: checkpoints={checkpoints} is unknown: use last or milestones")
        if seeds not in ("all", "first"):
            raise ConfigError(f"points: seeds={seeds} is unknown: use all or first")
        for steps in group.get("steps", [50]):
            if steps != "T" and not (isinstance(steps, int) and steps >= 1):
                raise ConfigError(f"points: steps={steps} is invalid: use a positive integer or T (all timesteps)")
            for guidance in group.get("guidance", [2.0]):
                if not (isinstance(guidance, (int, float)) and guidance >= 0):
                    raise ConfigError(f"points: guidance={guidance} is invalid: use a number >= 0")
                expanded.append(Point(sampler, steps, float(guidance), checkpoints, seeds, interval))
    return list(dict.fromkeys(expanded))
