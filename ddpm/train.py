"""train(cfg): build everything from the composed Hydra config and fit. `train.py` at the top only wraps it."""

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm.errors import ConfigError


def check_multirun_ddp(cfg: DictConfig) -> None:
    """Lightning's DDP re-launches the script once per device with `hydra.run.dir`, which a -m sweep job does not
    use, so every job's workers would write elsewhere (Lightning PR #18175, still open upstream)."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if "ddp" in strategy and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy={strategy} cannot run under -m (multirun): Lightning's DDP launcher breaks Hydra sweeps; "
            "run each configuration as its own `python train.py trainer=ddp ...`"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model described by `cfg`; returns the last logged metrics (train/loss, val/loss, ...)."""
    check_multirun_ddp(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module, _recursive_=False)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return {name: float(value) for name, value in trainer.callback_metrics.items()}
