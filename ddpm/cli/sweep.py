"""Hydra callbacks for `-m` sweeps, whichever launcher runs the jobs (docs/scaling.md).

`CheckSweep` composes every job's config and runs the command's checks on it in `on_multirun_start`, before the
sweeper or launcher writes the sweep folder, `multirun.yaml` or any job: a bad value in the last job stops the
sweep before the first one trains. It also gives each job of a parallel launcher its share of the CPU threads.
The Optuna search (hparams_search=optuna) is a sweeper of its own: ddpm/cli/optuna_sweeper.py.
"""

import copy
import itertools
import logging
import os

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ddpm.cli.runtime import exit_on_user_error
from ddpm.errors import ConfigError

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Launchers whose jobs run on this machine, where their data files and devices can be checked up front.
LOCAL_LAUNCHERS = {
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
}
RAY_LAUNCHER = "hydra_plugins.ddpm_ray_launcher.RayLauncher"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def values(override: Override) -> list[str]:
    """`key=value` for each value a sweep parameter can take; an interval by its two ends."""
    key = override.get_key_element()
    if isinstance(override.value(), IntervalSweep):
        return [f"{key}={override.value().start}", f"{key}={override.value().end}"]
    if override.is_sweep_override():
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    return [f"{key}={override.get_value_element_as_str()}"]


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of the sweep's jobs. The basic sweeper runs every combination; a sampling sweeper (Optuna)
    picks values as it goes, so every value of each parameter is tried once, with the others at their first."""
    searched = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides([*searched, *config.hydra.overrides.task])
    options = [values(o) for o in overrides]
    if config.hydra.sweeper._target_ == BASIC_SWEEPER:
        return [list(job) for job in itertools.product(*options)]
    first = [v[0] for v in options]
    return [first] + [first[:i] + [v] + first[i + 1 :] for i, vs in enumerate(options) for v in vs[1:]]


def on_this_machine(config: DictConfig) -> bool:
    target = config.hydra.launcher._target_
    ray_here = target == RAY_LAUNCHER and not OmegaConf.select(config, "hydra.launcher.ray.init.address")
    return target in LOCAL_LAUNCHERS or ray_here


def check_slurm_tasks(job_config: DictConfig) -> None:
    """Lightning's SLURM environment takes DDP's ranks from the job's tasks, so they must match the devices."""
    launcher = job_config.hydra.launcher
    devices, nodes = job_config.trainer.get("devices"), job_config.trainer.get("num_nodes", 1)
    if isinstance(devices, int) and devices > 0 and (devices, nodes) != (launcher.tasks_per_node, launcher.nodes):
        raise ConfigError(
            f"trainer.devices={devices} trainer.num_nodes={nodes} do not match hydra.launcher.tasks_per_node="
            f"{launcher.tasks_per_node} hydra.launcher.nodes={launcher.nodes}: Lightning takes one rank per SLURM "
            f"task; leave both to follow the trainer (conf/hydra/launcher/submitit_slurm.yaml), or set "
            f"hydra.launcher.tasks_per_node={devices} hydra.launcher.nodes={nodes}"
        )


def check_own_folder(job_config: DictConfig, num: int, folders: dict[str, int]) -> None:
    """Job `num`'s folder (hydra.sweep.subdir, with the job's number as the launcher sets it) is its own: two jobs
    in one folder would write one checkpoints/ and .hydra/; `folders` holds the earlier jobs' folders."""
    with open_dict(job_config):
        job_config.hydra.job.num = num
        job_config.hydra.job.id = str(num)
    folder = str(job_config.hydra.sweep.subdir)
    if folder in folders:
        raise ConfigError(
            f"hydra.sweep.subdir={OmegaConf.to_container(job_config.hydra.sweep)['subdir']} puts jobs "
            f"{folders[folder]} and {num} of the sweep into one folder ({folder}): make it differ between jobs, e.g. "
            "keep ${hydra.job.num} in it"
        )
    folders[folder] = num


class CheckSweep(Callback):
    """Before a -m sweep starts: `check(cfg, on_this_machine)` (a dotted path, e.g.
    ddpm.commands.train.check_sweep_job) on every job's config, as the job will see it. During the sweep: a job run
    by a launcher with `cpus_per_task` (submitit) uses that many threads, so that parallel jobs do not each size
    their thread pools to all cores."""

    def __init__(self, check: str):
        self.check = check

    @exit_on_user_error
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check = get_method(self.check)
        loader = GlobalHydra.instance().hydra.config_loader
        local = on_this_machine(config)
        quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:  # each job's Trainer reports its devices when it runs; not here as well
            logger.setLevel(logging.WARNING)
        folders: dict[str, int] = {}
        try:
            for num, job in enumerate(sweep_jobs(config)):
                job_config = loader.load_sweep_config(config, job)
                if config.hydra.sweeper._target_ == BASIC_SWEEPER:  # it numbers the jobs in this order
                    check_own_folder(job_config, num, folders)
                HydraConfig.instance().set_config(job_config)  # ${hydra:...} in the job's config reads it
                if job_config.hydra.launcher._target_ == SLURM_LAUNCHER:
                    check_slurm_tasks(job_config)
                cfg = copy.deepcopy(job_config)
                with read_write(cfg), open_dict(cfg):
                    cfg.paths.output_dir = str(config.hydra.sweep.dir)  # the jobs' folders will be inside it
                    del cfg["hydra"]
                check(cfg, local)
        finally:
            HydraConfig.instance().set_config(config)
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        threads = OmegaConf.select(config, "hydra.launcher.cpus_per_task")
        if threads:
            import torch

            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch.set_num_threads(int(threads))
            log.info(f"{threads} CPU thread(s) for this job (hydra.launcher.cpus_per_task)")
