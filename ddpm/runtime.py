"""Helpers that every command shares and that belong to no layer of the model: where a command runs."""

import torch

from ddpm.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """auto = the GPU when there is one; `device=cuda` on a machine without one is refused in one line."""
    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"device={name} is unknown: use one of {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible: use device=cpu or device=auto")
    return torch.device(name)
