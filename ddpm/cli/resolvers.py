"""OmegaConf resolvers the configs use; registered on import by the entry points."""

import re

from omegaconf import ListConfig, OmegaConf


def folder_name(overrides: str, length: int) -> str:
    """A sweep job's overrides as a folder name that passes back on the command line as ckpt=PATH: list values lose
    their brackets and quotes, and ",", "=", spaces and the like become "_" (model.channel_mults=[1,2] ->
    model.channel_mults-1_2). Cut at `length`: many overrides would pass the file system's 255-byte name limit."""
    name = re.sub(r"[\[\]{}'\"]", "", str(overrides))
    return re.sub(r"[^\w.+-]", "_", name)[: int(length)]


OmegaConf.register_new_resolver("folder_name", folder_name, replace=True)


def slurm_tasks(devices) -> int:
    """SLURM tasks per node for `trainer.devices`: Lightning's SLURM environment makes each task one DDP rank. `auto`
    (or -1) is the one device SLURM's allocation shows the job."""
    if isinstance(devices, ListConfig | list | tuple):  # device indices: [0, 1]
        return len(devices)
    return int(devices) if str(devices).isdigit() and int(devices) > 0 else 1


def slurm_gpus(accelerator, tasks) -> int:
    """GPUs per node to ask SLURM for: one per task for a GPU trainer (trainer=gpu), none otherwise, so that a CPU
    trainer runs on a cluster without GPUs (sbatch refuses a GPU request there). `auto` asks for none: on a
    cluster, where the login node cannot see the compute nodes' GPUs, trainer=gpu asks for them."""
    return int(tasks) if str(accelerator) in ("gpu", "cuda") else 0


OmegaConf.register_new_resolver("slurm_tasks", slurm_tasks, replace=True)
OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus, replace=True)
