"""hydra/launcher=ray: each job of a -m sweep as a Ray task, on this machine or on a running Ray cluster.

The project's own launcher over Ray's public API (ray.init, ray.remote, ray.get) rather than hydra-ray-launcher: that
plugin's last release (1.2.2, 2022) requires cloudpickle < 3 and boto3 (for its AWS launcher), which no longer
install beside this project's other extras (constraints.txt pins cloudpickle 3, which submitit brings), and it is not
maintained. Ray pickles the job with its own cloudpickle. The config keeps the plugin's shape: `ray.init` (ray.init's
arguments: address null starts Ray here or joins the one `ray start` runs on this machine, `auto` or `HOST:PORT` a
cluster) and `ray.remote` (the resources of one job: num_cpus, num_gpus)."""

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def _run_job(hydra_context, task_function, config: DictConfig, singleton_state: dict[Any, Any]) -> JobReturn:
    """One job, in a Ray worker: Hydra's state as the sweep left it, then the job as the basic launcher runs it."""
    setup_globals()
    Singleton.set_state(singleton_state)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayLauncher(Launcher):
    def __init__(self, ray: DictConfig) -> None:
        self.ray = ray
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray  # the ray extra; ddpm.cli.app names it when missing

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        started = not ray.is_initialized()
        if started:
            ray.init(**OmegaConf.to_container(self.ray.init, resolve=True))
        log.info(f"Ray launcher: {len(job_overrides)} job(s) on {ray.cluster_resources().get('CPU', 0):g} CPU(s) "
                 f"of the cluster at {ray.get_runtime_context().gcs_address}")
        remote = ray.remote(**OmegaConf.to_container(self.ray.remote, resolve=True))(_run_job)
        tasks = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = f"{config.hydra.job.name}_{num}"
                config.hydra.job.num = num
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            tasks.append(remote.remote(self.hydra_context, self.task_function, config, Singleton.get_state()))
        try:
            return ray.get(tasks)
        finally:
            if started:
                ray.shutdown()
