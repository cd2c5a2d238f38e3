"""The sampling setting of a checkpoint. A recipe states the setting measured for it (conf/sampling/<name>.yaml,
chosen by its experiment yaml); its training grids draw with it and write it into every checkpoint. A command that
samples a checkpoint takes each of sampler, steps, guidance and guidance interval from the command line if given
there, else from the checkpoint, else from the package default (conf/sampling/default.yaml), and logs which."""

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

KEYS = ("sampler", "steps", "guidance", "guidance_interval")


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) or OmegaConf.is_list(value) \
        else value


def stored_setting(sampler: dict, guidance: float, guidance_interval) -> dict:
    """What a checkpoint holds under "sampling": plain values (weights_only=True loads them)."""
    sampler = _plain(sampler)
    interval = None if guidance_interval is None else [float(v) for v in guidance_interval]
    return {"sampler": sampler, "steps": sampler.get("steps"), "guidance": float(guidance),
            "guidance_interval": interval}


def given_keys(prefix: str = "") -> set[str]:
    """The keys of KEYS (under `prefix`, e.g. "grid.") that this command's own command line sets: `sampler=ddim`,
    `sampler.order=1` and `sampler@grid.sampler=ddim` all name the sampler."""
    if not HydraConfig.initialized():
        return set()
    given = set()
    for override in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        key = override.key_or_group
        if override.package:  # sampler@grid.sampler=ddim: the group's option placed at grid.sampler
            key = override.package
        if not key.startswith(prefix):
            continue
        head = key[len(prefix):].split(".", 1)[0]
        if head in KEYS:
            given.add(head)
    return given


def resolve(default: dict, stored: dict | None, given: set[str]) -> tuple[dict, dict[str, str]]:
    """The setting to sample with and where each value came from ("command line", "checkpoint", "default").
    `default` holds the composed config's values (the command line's where given). A checkpoint's steps belong to
    its sampler: with another sampler from the command line they go too, for that sampler's own count."""
    stored = stored or {}
    values, sources = {}, {}
    for key in KEYS:
        if key in given:
            values[key], sources[key] = default[key], "command line"
        elif key in stored and not (key == "steps" and "sampler" in given):
            values[key], sources[key] = stored[key], "checkpoint"
        else:
            values[key], sources[key] = default[key], "default"
    return values, sources


def describe(values: dict, sources: dict) -> str:
    sampler = values["sampler"]
    name = sampler["_target_"].rsplit(".", 1)[-1] if isinstance(sampler, dict) else repr(sampler)
    steps = values["steps"] if values["steps"] is not None else "the sampler's own"
    shown = {"sampler": name, "steps": steps, "guidance": values["guidance"],
             "guidance_interval": values["guidance_interval"]}
    return ", ".join(f"{key} {shown[key]} ({sources[key]})" for key in KEYS)


def command_setting(cfg: DictConfig, stored: dict | None, prefix: str = "") -> tuple[dict, str]:
    """sample and evaluate (prefix "") or compare's grid ("grid."): the setting for a checkpoint whose stored setting
    is `stored`, and the line that says where each value came from, for the command to log once its checks pass
    (a log line opens the log file in the run folder, which a refused call must leave empty)."""
    node = OmegaConf.select(cfg, prefix[:-1]) if prefix else cfg
    default = {"sampler": _plain(node.sampler), "steps": node.get("steps"), "guidance": node.guidance,
               "guidance_interval": _plain(node.guidance_interval)}
    values, sources = resolve(default, stored, given_keys(prefix))
    return values, f"sampling setting: {describe(values, sources)}"
