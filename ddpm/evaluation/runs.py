"""Training runs as a report sees them: found in folders, described by their saved config (schedule, loss, T, seed,
budget and every other setting), grouped into arms, their checkpoints, and the scalars they logged to TensorBoard.

An arm is the set of runs whose settings are equal but for the seed: a compare report pools them as seeds of one
experiment. The settings are the saved config (`.hydra/config.yaml`) less what says where a run read or wrote
(LOCATIONS), and less every value that only repeats another through an interpolation: `data.seed: ${seed}` follows
the seed, the callbacks' `dirpath: ${paths.output_dir}/...` is an output location, `module.net: ${model}` points
to `model`, which is compared itself. A run without a saved config is described by its checkpoint's
hyper-parameters (schedule, model and module only)."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.training.checkpoint import load_checkpoint
from ddpm.validation import show

# Keys (and the keys below them) of a run's config that say where it read or wrote, not what it trained: where
# MNIST is and whether its files' MD5s were checked (the same digits either way), the run folder, the folder a
# resumed run continues in, Hydra's own settings.
LOCATIONS = ("paths", "hydra", "task_name", "run_name", "resume", "data.root", "data.download", "data.check_md5")
# Groups whose options (conf/<group>/*.yaml) name a run's setting in an arm's label: `model=base`, not every key.
NAMED_GROUPS = ("schedule", "model")


@dataclass
class Run:
    path: Path
    schedule: str
    loss: str
    T: int
    seed: int
    budget: int
    settings: dict = field(default_factory=dict, repr=False)  # flat: "module.lr" -> 0.001
    arm: str = ""  # set by label_arms, which sees every run of the report

    @property
    def name(self) -> str:
        return self.path.name


def find_runs(runs) -> list[Path]:
    """Run folders (holding checkpoints/last.ckpt) named directly or found one level inside the given folders."""
    paths = [runs] if isinstance(runs, (str, Path)) else list(runs)
    found = []
    for path in map(Path, paths):
        if (path / "checkpoints" / "last.ckpt").is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if (p / "checkpoints" / "last.ckpt").is_file())
    if not found:
        raise ConfigError(f"no run folders with checkpoints/last.ckpt in {paths}: "
                          f"pass runs=<multirun folder> or runs=[run1,run2]")
    return found


def flatten(config, prefix: str = "") -> dict:
    """Nested dicts as dotted keys (and lists that hold dicts, by index: `trainer.plugins.0._target_`); other lists
    as tuples, so that every setting can be compared and hashed."""
    if isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        config = dict(enumerate(config))
    if isinstance(config, dict):
        return {k: v for key, value in config.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix.removesuffix("."): tuple(config) if isinstance(config, list) else config}


def is_location(key: str) -> bool:
    return any(key == place or key.startswith(place + ".") for place in LOCATIONS)


def run_settings(config: dict) -> dict:
    """What a run trained, flat: its config less the seed, the locations and the values that repeat another."""
    return {key: value for key, value in flatten(config).items()
            if key != "seed" and not is_location(key) and not (isinstance(value, str) and "${" in value)}


def describe(path: Path) -> Run:
    """Schedule, loss, T, seed, budget and settings of a run, from its saved config (else from its checkpoint)."""
    config_file = path / ".hydra" / "config.yaml"
    if config_file.exists():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
        seed, budget = config.get("seed", -1), config.get("trainer", {}).get("max_steps", -1)
    else:
        hparams = load_checkpoint(path / "checkpoints" / "last.ckpt")["hyper_parameters"]
        config = {"module": {k: v for k, v in hparams.items() if k not in ("net", "schedule")},
                  "schedule": hparams["schedule"], "model": hparams.get("net", {})}
        seed, budget = -1, -1
    module, schedule = config["module"], config["schedule"]
    prediction, gamma = module.get("prediction", "eps"), module.get("min_snr_gamma")
    loss = prediction if gamma is None else f"{prediction}, min-SNR-{gamma:g}"
    return Run(path, schedule_name(schedule), loss, int(schedule.get("timesteps", 1000)), int(seed), int(budget),
               run_settings(config))


def schedule_name(schedule: dict) -> str:
    """ddpm.diffusion.schedules.CosineSchedule -> cosine."""
    return str(schedule.get("_target_", "")).rsplit(".", 1)[-1].removesuffix("Schedule").lower()


def group_atoms(group: str, settings: dict, options: dict[str, dict]) -> list[str]:
    """A group's settings as `group=option` (the option of conf/<group>/ with the same class that differs in the
    fewest keys) and `group.key=value` for each key where the run differs from that option."""
    mine = {k.removeprefix(group + "."): v for k, v in settings.items() if k.startswith(group + ".")}
    differing = {name: [k for k in mine.keys() | flat.keys() if mine.get(k) != flat.get(k)]
                 for name, flat in ((name, flatten(option)) for name, option in sorted(options.items()))
                 if flat.get("_target_") == mine.get("_target_")}
    if not differing:
        return [f"{group}.{k}={show(v)}" for k, v in mine.items()]
    name = min(differing, key=lambda n: len(differing[n]))
    return [f"{group}={name}"] + [f"{group}.{k}={show(mine.get(k))}" for k in mine if k in differing[name]]


def atoms(settings: dict, options: dict[str, dict[str, dict]]) -> list[str]:
    """A run's settings as `key=value` pieces, the named groups first (schedule, model), the rest in config order."""
    named = [g for g in NAMED_GROUPS if g in options]
    found = [a for g in named for a in group_atoms(g, settings, options[g])]
    return found + [f"{k}={show(v)}" for k, v in settings.items() if k.split(".")[0] not in named]


def label_arms(runs: list[Run], options: dict[str, dict[str, dict]]) -> dict[str, list[Run]]:
    """Groups the runs into arms (equal settings) and names each by its schedule and the settings in which it
    differs from another arm ("cosine, model=base", "linear, module.lr=0.002"). `options`: for each group of
    NAMED_GROUPS, its options as conf/<group>/*.yaml holds them. Sets `run.arm`; returns the runs of each arm."""
    def key(run):
        return tuple(sorted(run.settings.items(), key=lambda kv: kv[0]))

    described = {key(run): atoms(run.settings, options) for run in runs}
    shared = Counter(a for pieces in described.values() for a in set(pieces))
    arms = {}
    for run in runs:
        pieces = described[key(run)]
        # The schedule always leads (the option's name, or the class's where no option matches); the rest only
        # where another arm has something else.
        schedule = next((a.removeprefix("schedule=") for a in pieces if a.startswith("schedule=")), run.schedule)
        distinct = [a for a in pieces if shared[a] < len(described) and not a.startswith("schedule=")]
        run.arm = ", ".join([schedule, *distinct])
        arms.setdefault(run.arm, []).append(run)
    return arms


def checkpoints(run: Path, which: str) -> list[Path]:
    """`last`: the end of the run; `milestones`: also its milestone checkpoints (1/4, 1/2, 3/4 of the run)."""
    last = [run / "checkpoints" / "last.ckpt"]
    return last if which == "last" else sorted((run / "checkpoints").glob("milestone_step_*.ckpt")) + last


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars a run logged, by tag; none for a run folder without its TensorBoard events (copied without them)."""
    if not (run / "tensorboard").is_dir():  # EventAccumulator raises on a missing folder
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
