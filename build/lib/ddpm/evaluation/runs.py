"""Training runs as a report sees them: found in folders, described by their saved config (schedule, loss, T, seed,
budget), their checkpoints, and the scalars they logged to TensorBoard."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.training.checkpoint import load_checkpoint


@dataclass
class Run:
    path: Path
    schedule: str
    loss: str
    T: int
    seed: int
    budget: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def arm(self) -> str:
        """Runs of one arm differ only by seed."""
        return f"{self.schedule}, {self.loss}, T={self.T}, {self.budget} steps"


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


def describe(path: Path) -> Run:
    """Schedule, loss, T, seed and budget of a run, from its saved config (else from its checkpoint)."""
    config_file = path / ".hydra" / "config.yaml"
    if config_file.exists():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
        module, seed, budget = config["module"], config.get("seed", -1), config.get("trainer", {}).get("max_steps", -1)
        schedule = config["schedule"]
        prediction, gamma = module.get("prediction", "eps"), module.get("min_snr_gamma")
    else:
        hparams = load_checkpoint(path / "checkpoints" / "last.ckpt")["hyper_parameters"]
        schedule, seed, budget = hparams["schedule"], -1, -1
        prediction, gamma = hparams.get("prediction", "eps"), hparams.get("min_snr_gamma")
    name = str(schedule["_target_"]).rsplit(".", 1)[-1].removesuffix("Schedule").lower()
    loss = prediction if gamma is None else f"{prediction}, min-SNR-{gamma:g}"
    return Run(path, name, loss, int(schedule.get("timesteps", 1000)), int(seed), int(budget))


def checkpoints(run: Path, which: str) -> list[Path]:
    """`last`: the end of the run; `milestones`: also its milestone checkpoints (1/4, 1/2, 3/4 of the run)."""
    last = [run / "checkpoints" / "last.ckpt"]
    return last if which == "last" else sorted((run / "checkpoints").glob("milestone_step_*.ckpt")) + last


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
