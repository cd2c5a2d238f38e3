"""An exported model: one safetensors file holding a checkpoint's weights (EMA by default) and, in its string
metadata, JSON of what rebuilds and samples it (the hyper-parameters, the sampling setting) and where it came from.
No pickle: safetensors stores raw tensors, and the metadata is text. `ddpm-export` writes one; every command that
takes `ckpt=` reads one (a path ending in .safetensors) as it reads a checkpoint (ddpm.training.checkpoint).

The package ships one as package data, ddpm/pretrained/quickstart.safetensors: the quick-start recipe's trained model,
which `ckpt=pretrained` names (the default of sample, evaluate and nll). Its sha256 is recorded beside it
(tests/test_pretrained.py holds the two equal). A version without the file says so in one line."""

import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from ddpm.errors import CheckpointError

SUFFIX = ".safetensors"
PRETRAINED = "pretrained"
QUICKSTART = Path(__file__).resolve().parents[1] / "pretrained" / "quickstart.safetensors"
FORMAT = "ddpm-mnist exported model"
# 1: hyper_parameters, sampling, provenance (source, global_step, train_seconds, weights, results_row).
FORMAT_VERSION = 1


def model_path(ckpt) -> Path:
    """The file that `ckpt=` names: the shipped model for `pretrained`, else the path itself."""
    if str(ckpt) != PRETRAINED:
        return Path(ckpt).expanduser()
    if not QUICKSTART.is_file():
        raise CheckpointError("no pretrained model ships with this version: pass ckpt=<checkpoint or exported file>")
    return QUICKSTART


def is_exported(path: str | Path) -> bool:
    return Path(path).suffix == SUFFIX


def weights_of(checkpoint: dict, ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The weights to sample with and which they are: EMAWeightAveraging stores the EMA weights as `state_dict` and
    the raw training weights as `current_model_state`; a run without it has raw weights only, as `state_dict`."""
    averaged = "current_model_state" in checkpoint
    if ema or not averaged:
        return checkpoint["state_dict"], "ema" if averaged else "raw"
    return checkpoint["current_model_state"], "raw"


def exported_bytes(checkpoint: dict, source: str, ema: bool = True, results_row=None) -> bytes:
    """The file `ddpm-export` writes for a checkpoint (as load_checkpoint returns it) read from `source`;
    `results_row` (plain data) names the row of a results.csv the model scored."""
    weights, which = weights_of(checkpoint, ema)
    provenance = {"source": source, "global_step": checkpoint.get("global_step"),
                  "train_seconds": checkpoint.get("train_seconds"), "weights": which, "results_row": results_row}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "hyper_parameters": json.dumps(checkpoint["hyper_parameters"]),
                "sampling": json.dumps(checkpoint.get("sampling")), "provenance": json.dumps(provenance)}
    # safetensors stores dense row-major tensors; channels_last weights are copied into that layout, with their values.
    return safetensors.torch.save({k: v.contiguous() for k, v in weights.items()}, metadata=metadata)


def read_exported(path: Path) -> dict:
    """An exported file as load_checkpoint returns a checkpoint: state_dict, hyper_parameters, sampling, plus its
    provenance; one-line errors for a missing, damaged or foreign file, or one of a newer format."""
    if not path.is_file():
        raise CheckpointError(f"exported model {path} does not exist: write one with ddpm-export ckpt=... out={path}")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            weights = {key: f.get_tensor(key) for key in f.keys()}
    except (safetensors.SafetensorError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"exported model {path} cannot be read ({first}): it is truncated or not a "
                              f"safetensors file") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a model written by ddpm-export (its metadata "
                              f"has no format {FORMAT!r})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"exported model {path} has format version {version}, and this version of ddpm-mnist "
                              f"reads version {FORMAT_VERSION}: use the ddpm-mnist that wrote it, or export it again")
    try:
        stored = {key: json.loads(metadata[key]) for key in ("hyper_parameters", "sampling", "provenance")}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"exported model {path} has damaged metadata ({type(e).__name__}: {e}): "
                              f"export it again") from None
    if not isinstance(stored["hyper_parameters"], dict):
        raise CheckpointError(f"exported model {path} has damaged metadata (hyper_parameters is not a mapping): "
                              f"export it again")
    return {"state_dict": weights, **stored}
