"""OmegaConf resolvers the configs use; registered on import by the entry points."""

from omegaconf import OmegaConf

# Sweep folder names list the overrides; many overrides would pass the file system's 255-byte name limit.
OmegaConf.register_new_resolver("truncate", lambda text, length: str(text)[: int(length)], replace=True)


def command_steps(default, *, _root_):
    """A sampler's steps: the command's own `steps=N` (sample, evaluate) when it is set, else the sampler's default
    (conf/sampler/*.yaml). Configs without a top-level `steps` (the training callbacks) get the default."""
    steps = _root_.get("steps")
    return default if steps is None else steps


OmegaConf.register_new_resolver("command_steps", command_steps, replace=True)
