"""OmegaConf resolvers the configs use; registered on import by the entry points."""

from omegaconf import OmegaConf

# Sweep folder names list the overrides; many overrides would pass the file system's 255-byte name limit.
OmegaConf.register_new_resolver("truncate", lambda text, length: str(text)[: int(length)], replace=True)
