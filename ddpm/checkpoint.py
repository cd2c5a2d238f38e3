"""Reading a trained model back from a Lightning checkpoint without unpickling arbitrary objects."""

import pickle
import zipfile
from pathlib import Path

import torch

from ddpm.errors import DDPMError
from ddpm.module import DiffusionModule


class CheckpointError(DDPMError):
    pass


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (tensors, containers and primitives only), with one-line errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass ckpt=<run folder>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} was refused: it holds objects other than tensors and plain data ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}): it is truncated or not a PyTorch file") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no state_dict / hyper_parameters)")
    return checkpoint


def load_module(path: str | Path, ema: bool = True) -> DiffusionModule:
    """The DiffusionModule of a checkpoint in eval mode: EMA weights by default (EMAWeightAveraging stores them as
    `state_dict` and the raw training weights as `current_model_state`)."""
    checkpoint = load_checkpoint(path)
    try:
        module = DiffusionModule(**checkpoint["hyper_parameters"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has a model config this version cannot build: {e}") from None
    weights = checkpoint["state_dict"] if ema else checkpoint.get("current_model_state", checkpoint["state_dict"])
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its own model config: {str(e).splitlines()[0]}") from None
    return module.eval()
