"""Writing checkpoints atomically, and reading them back without unpickling arbitrary objects."""

import logging
import pickle
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ddpm.errors import CheckpointError
from ddpm.files import save_tensors
from ddpm.training.exported import is_exported, model_path, read_exported, weights_of
from ddpm.training.module import DiffusionModule

log = logging.getLogger(__name__)

# Checkpoints name the classes of their network and schedule; those written before the subpackages name the
# modules they had then.
MOVED_MODULES = {"ddpm.unet.": "ddpm.models.unet.", "ddpm.schedules.": "ddpm.diffusion.schedules."}


def upgrade(hyper_parameters: dict) -> dict:
    """The hyper-parameters of a checkpoint of any version, with the class paths of this one."""
    for part in ("net", "schedule"):
        config = hyper_parameters.get(part)
        target = config.get("_target_", "") if isinstance(config, dict) else ""
        for old, new in MOVED_MODULES.items():
            if target.startswith(old):
                config["_target_"] = new + target.removeprefix(old)
    return hyper_parameters


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (tensors, containers and primitives only), with one-line errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass ckpt=<run folder>/checkpoints/last.ckpt")
    if is_exported(path):
        raise CheckpointError(f"{path} is an exported model (its weights, no training state): sample, evaluate and "
                              f"nll read it, training cannot resume from it or compare it")
    unreadable = f"checkpoint {path} cannot be read ({{}}): it is truncated or not a PyTorch file"
    if not zipfile.is_zipfile(path):  # what torch.save writes; a cut-off one has lost its central directory
        raise CheckpointError(unreadable.format("not a zip archive"))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} was refused: it holds objects other than tensors and plain data "
                              f"({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(unreadable.format(type(e).__name__)) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no state_dict / hyper_parameters)")
    upgrade(checkpoint["hyper_parameters"])
    return checkpoint


def saved_processes(checkpoint: dict) -> int:
    """How many processes trained the checkpoint: DiffusionModule saves one generator state per DDP rank."""
    states = checkpoint.get("rng_states", {}).get("cpu")
    return len(states) if states is not None and states.ndim == 2 else 1


def check_resumable(path: str | Path, module: DiffusionModule, trainer: L.Trainer) -> dict:
    """The checkpoint a run resumes from, refused (in one line, before Lightning reads it) when it cannot be read
    safely, was trained with another model, schedule or prediction target than `module`, on another number of
    processes than `trainer` runs, or when its cosine learning-rate decay has ended and more steps would not train."""
    checkpoint = load_checkpoint(path)
    processes = trainer.num_devices * trainer.num_nodes
    if saved_processes(checkpoint) != processes:
        # Each process trains on its own shard of every epoch with its own generator; on another count the resumed
        # run would see other batches and noise than the one it continues.
        raise CheckpointError(
            f"checkpoint {path} was trained by {saved_processes(checkpoint)} process(es) and this run has {processes} "
            f"(trainer.devices x trainer.num_nodes): resume it on {saved_processes(checkpoint)}, e.g. "
            f"trainer.devices={saved_processes(checkpoint)}, or train a new run"
        )
    schedules = checkpoint.get("lr_schedulers") or [{}]
    saved_schedule = (schedules[0].get("lr_lambdas") or [None])[0] or {}  # WarmupCosine's fields
    total, step = saved_schedule.get("total_steps"), checkpoint.get("global_step", 0)
    if module.hparams.cosine_decay and total is not None and step >= total and trainer.max_steps > total:
        raise CheckpointError(
            f"checkpoint {path} ended its cosine learning-rate decay (module.cosine_decay=true) at step {step}, with "
            f"learning rate 0: trainer.max_steps={trainer.max_steps} would add steps that do not train; "
            f"train a new run with trainer.max_steps={trainer.max_steps} instead"
        )
    saved = checkpoint["hyper_parameters"]
    differences = [
        f"{group}.{key}: checkpoint {saved.get(part, {}).get(key)!r}, this run {value!r}"
        for group, part in (("model", "net"), ("schedule", "schedule"))
        for key, value in module.hparams[part].items()
        if saved.get(part, {}).get(key) != value
    ]
    if saved.get("prediction") != module.hparams.prediction:
        differences.append(f"module.prediction: checkpoint {saved.get('prediction')!r}, "
                           f"this run {module.hparams.prediction!r}")
    if differences:
        raise CheckpointError(
            f"checkpoint {path} was trained with another config ({'; '.join(differences)}): resume with "
            f"resume=<its run folder>, which reuses its config, or pass the same model/schedule options"
        )
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it and renames it into place (ddpm.files), so that a
    process killed during a save, or a disk that fills up, leaves the previous checkpoint whole and no temporary file
    (TorchCheckpointIO writes into the file itself). A checkpoint folder deleted under the running job is made
    again, with a line that says so."""

    def __init__(self):
        super().__init__()
        self.folders: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        folder = Path(path).parent
        if folder in self.folders and not folder.is_dir():
            log.warning(f"{folder} was deleted while the run went on: made again for {Path(path).name} (step "
                        f"{checkpoint.get('global_step')}); the checkpoints it held are lost")
        self.folders.add(folder)
        save_tensors(checkpoint, path)


def load_module(path: str | Path, ema: bool = True) -> DiffusionModule:
    """The DiffusionModule of a checkpoint, of an exported model (*.safetensors, ddpm.training.exported) or of the
    shipped one (`pretrained`), in eval mode: EMA weights by default (EMAWeightAveraging stores them as `state_dict`
    and the raw training weights as `current_model_state`; an exported file holds the one set it was exported with)."""
    path = model_path(path)
    if is_exported(path):
        checkpoint = read_exported(path)
        upgrade(checkpoint["hyper_parameters"])  # load_checkpoint does it for a checkpoint
        which = checkpoint["provenance"].get("weights")
        if not ema and which == "ema":
            raise CheckpointError(f"ema=false asks for the raw weights, and {path} holds only its EMA weights: "
                                  f"drop ema=false, or export the checkpoint again with ema=false")
        weights = checkpoint["state_dict"]
        log.info(f"exported model {path}: {which} weights of {checkpoint['provenance'].get('source')} at step "
                 f"{checkpoint['provenance'].get('global_step')}")
    else:
        checkpoint = load_checkpoint(path)
        weights, _ = weights_of(checkpoint, ema)
    try:
        module = DiffusionModule(**checkpoint["hyper_parameters"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has a model config this version cannot build: {e}") from None
    # The sampling setting its recipe was measured at (ddpm.sampling.setting); None in checkpoints from before.
    module.sampling_setting = checkpoint.get("sampling")
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its own model config: "
                              f"{str(e).splitlines()[0]}") from None
    return module.eval()
