"""The sampling setting of a checkpoint. A recipe states the setting measured for it (conf/sampling/<name>.yaml,
chosen by its experiment yaml); its training grids draw with it and write it into every checkpoint. A command that
samples a checkpoint takes each of sampler, steps, guidance and guidance interval from the command line if given
there, else from the stored setting, else from the package default (conf/sampling/default.yaml), and logs which. The
stored setting is the run folder's sampling.yaml (what `ddpm-tune` found for it) when there is one beside the
checkpoint's folder, else the checkpoint's own."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from ddpm.errors import ConfigError

KEYS = ("sampler", "steps", "guidance", "guidance_interval")
GROUP_KEYS = {"sampler", "guidance", "guidance_interval"}  # what a yaml of conf/sampling/ sets (steps: the sampler's)
TUNED = "sampling.yaml"  # in the run folder, beside checkpoints/: written by ddpm-tune


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
    """The keys of KEYS that this command's own command line sets in the setting at `prefix` ("" for sample and
    evaluate, "grid" for compare): `sampler=ddim` and `sampler.order=1` both name the sampler, as do `grid.sampler=ddim`
    and `sampler@grid.sampler=ddim` under "grid"; a whole setting of conf/sampling/ (`sampling@_global_=quickstart`,
    `sampling@grid=quickstart`) names the keys its yaml holds."""
    if not HydraConfig.initialized():
        return set()
    head, given = f"{prefix}." if prefix else "", set()
    for override in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        path = override.key_or_group if override.package is None else override.package
        path = "" if path == "_global_" else path
        if override.key_or_group == "sampling" and path == prefix:
            given |= GROUP_KEYS
        elif path.startswith(head):
            given.add(path.removeprefix(head).split(".", 1)[0])
    return given & set(KEYS)


def tuned_path(ckpt) -> Path:
    """Where ddpm-tune writes the setting of the run that holds `ckpt` (<run>/checkpoints/<name>.ckpt)."""
    return Path(ckpt).expanduser().absolute().parent.parent / TUNED


def load_tuned(path: Path) -> dict:
    """A run folder's sampling.yaml: the keys of KEYS, the sampler a config with its _target_; anything else is
    refused in one line rather than sampled with."""
    try:
        setting = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # YAML's and OmegaConf's parse errors have no common base
        raise ConfigError(f"{path} cannot be read as a sampling setting ({type(e).__name__}): fix or delete it") from e
    sampler = setting.get("sampler") if isinstance(setting, dict) else None
    if not isinstance(sampler, dict) or "_target_" not in sampler or not set(setting) <= set(KEYS):
        raise ConfigError(f"{path} is not a sampling setting: it needs `sampler:` (a sampler config with _target_) "
                          f"and may hold only {', '.join(KEYS)}; fix or delete it")
    return setting


def stored_for(ckpt, checkpoint_setting: dict | None) -> tuple[dict | None, str]:
    """The stored setting a command uses for `ckpt` and its source: the run's tuned one, else the checkpoint's. Only
    a checkpoint in a run's checkpoints/ folder has a run (a file elsewhere says nothing about its grandparent)."""
    in_run = ckpt is not None and Path(ckpt).expanduser().absolute().parent.name == "checkpoints"
    path = tuned_path(ckpt) if in_run else None
    if path is not None and path.is_file():
        return load_tuned(path), f"tuned ({path})"
    return checkpoint_setting, "checkpoint"


def resolve(default: dict, stored: dict | None, given: set[str],
            stored_source: str = "checkpoint") -> tuple[dict, dict[str, str]]:
    """The setting to sample with and where each value came from ("command line", `stored_source`, "default").
    `default` holds the composed config's values (the command line's where given). A checkpoint's steps belong to
    its sampler: with another sampler from the command line they go too, for that sampler's own count."""
    stored = stored or {}
    values, sources = {}, {}
    for key in KEYS:
        if key in given:
            values[key], sources[key] = default[key], "command line"
        elif key in stored and not (key == "steps" and "sampler" in given):
            values[key], sources[key] = stored[key], stored_source
        else:
            values[key], sources[key] = default[key], "default"
    return values, sources


def describe(values: dict, sources: dict) -> str:
    sampler = values["sampler"]
    # compare's grid.sampler=ddim is a yaml's name, shown as given
    name = sampler["_target_"].rsplit(".", 1)[-1] if isinstance(sampler, dict) else str(sampler)
    steps = values["steps"] if values["steps"] is not None else "the sampler's own"
    shown = {"sampler": name, "steps": steps, "guidance": values["guidance"],
             "guidance_interval": values["guidance_interval"]}
    return ", ".join(f"{key} {shown[key]} ({sources[key]})" for key in KEYS)


def command_setting(cfg: DictConfig, stored: dict | None, ckpt=None, conditional: bool = True,
                    prefix: str = "") -> tuple[dict, str]:
    """sample, evaluate and compare's grids: the setting for a checkpoint whose stored setting is `stored` (or, given
    the checkpoint's path `ckpt`, its run's tuned one: stored_for), the command's own at `prefix` of cfg ("grid" for
    compare) where its command line gives it, and the line that says where each value came from, for the command to
    log once its checks pass (a log line opens the log file in the run folder, which a refused call must leave
    empty)."""
    stored, source = stored_for(ckpt, stored)
    node = OmegaConf.select(cfg, prefix) if prefix else cfg
    default = {"sampler": _plain(node.sampler), "steps": node.get("steps"), "guidance": node.guidance,
               "guidance_interval": _plain(node.guidance_interval)}
    values, sources = resolve(default, stored, given_keys(prefix), source)
    if not conditional:  # guidance mixes a conditional prediction with the unconditional one: there is none here
        values, sources = {**values, "guidance": 0.0}, {**sources, "guidance": "unconditional sampling"}
    return values, f"sampling setting: {describe(values, sources)}"
