"""OmegaConf resolvers the configs use; registered on import by the entry points."""

import re

from omegaconf import OmegaConf


def folder_name(overrides: str, length: int) -> str:
    """A sweep job's overrides as a folder name that passes back on the command line as ckpt=PATH: list values lose
    their brackets and quotes, and ",", "=", spaces and the like become "_" (model.channel_mults=[1,2] ->
    model.channel_mults-1_2). Cut at `length`: many overrides would pass the file system's 255-byte name limit."""
    name = re.sub(r"[\[\]{}'\"]", "", str(overrides))
    return re.sub(r"[^\w.+-]", "_", name)[: int(length)]


OmegaConf.register_new_resolver("folder_name", folder_name, replace=True)
