"""train(cfg): build everything from the composed Hydra config and fit. `train.py` at the top only wraps it."""

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm.checkpoint import CheckpointError, check_resumable, load_checkpoint
from ddpm.cli import check_writable, save_run_config
from ddpm.errors import ConfigError
from ddpm.module import NonFiniteError
from ddpm.validation import check_train_options, refused_by_lightning


def check_multirun_ddp(cfg: DictConfig) -> None:
    """Lightning's DDP re-launches the script once per device with `hydra.run.dir`, which a -m sweep job does not
    use, so every job's workers would write elsewhere (Lightning PR #18175, still open upstream)."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if "ddp" in strategy and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy={strategy} cannot run under -m (multirun): Lightning's DDP launcher breaks Hydra sweeps; "
            "run each configuration as its own `python train.py trainer=ddp ...`"
        )


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to continue from: `resume=RUN` means RUN/checkpoints/last.ckpt; `ckpt_path` any checkpoint."""
    if not cfg.get("resume"):
        return cfg.get("ckpt_path")
    path = Path(cfg.resume).expanduser() / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(
            f"resume={cfg.resume} has no checkpoints/last.ckpt: the run stopped before its first checkpoint "
            f"(callbacks.periodic_checkpoint.every_n_train_steps); start it again without resume="
        )
    return str(path)


def last_good_checkpoint(trainer: L.Trainer) -> str:
    """Every checkpoint was written before the step that failed (whose update was never applied)."""
    saved = [p for c in trainer.checkpoint_callbacks for p in Path(c.dirpath).glob("*.ckpt")]
    if not saved:
        return "no checkpoint had been written yet: lower module.lr or trainer.gradient_clip_val and start again"
    last = max(saved, key=lambda p: p.stat().st_mtime)
    step = load_checkpoint(last)["global_step"]
    return f"{last} (step {step}) is kept: resume from it with a lower module.lr or trainer.gradient_clip_val"


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model described by `cfg`; returns the last logged metrics (train/loss, val/loss, ...).

    Everything a config can get wrong is checked before the first file is written."""
    check_train_options(cfg)
    check_multirun_ddp(cfg)
    check_writable(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = instantiate(cfg.module, _recursive_=False)
    ckpt_path = resume_checkpoint(cfg)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    with refused_by_lightning("trainer"):
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    if ckpt_path:
        check_resumable(ckpt_path, module, trainer)
    # The data last: prepare_data may download MNIST, which a refused checkpoint or callback must not cause.
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.batches_per_epoch(trainer.num_devices * trainer.num_nodes)
    save_run_config(cfg)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except NonFiniteError as e:
        raise NonFiniteError(f"{e}; {last_good_checkpoint(trainer)}") from None
    return {name: float(value) for name, value in trainer.callback_metrics.items()}
