"""The LightningModule: a denoising network and a Gaussian diffusion, trained with the simple DDPM loss."""

import math

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError


def _plain(config) -> dict:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float in [-1, 1]."""
    return images.float() / 127.5 - 1


class DiffusionModule(L.LightningModule):
    """`net` and `schedule` are configs with a `_target_` (kept as plain dicts in the checkpoint, so that a
    checkpoint rebuilds its own model without unpickling any object).

    The class label is replaced by the null label with probability `cond_drop_prob`, which trains the
    unconditional model of classifier-free guidance inside the conditional one."""

    def __init__(
        self,
        net: dict,
        schedule: dict,
        prediction: str = "eps",
        cond_drop_prob: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        cosine_decay: bool = False,
        channels_last: bool = True,
    ):
        super().__init__()
        net, schedule = _plain(net), _plain(schedule)
        if not 0 <= cond_drop_prob < 1:
            raise ConfigError(f"module.cond_drop_prob={cond_drop_prob} must lie in [0, 1), e.g. 0.1")
        self.save_hyperparameters(
            dict(net=net, schedule=schedule, prediction=prediction, cond_drop_prob=cond_drop_prob, lr=lr,
                 weight_decay=weight_decay, warmup_steps=warmup_steps, cosine_decay=cosine_decay, channels_last=channels_last)
        )
        self.net = instantiate(net)
        if channels_last:
            # oneDNN's NHWC convolution kernels: about 15% more training throughput on this project's CPU.
            self.net.to(memory_format=torch.channels_last)
        self.diffusion = GaussianDiffusion(instantiate(schedule), prediction)

    @property
    def conditional(self) -> bool:
        return self.net.num_classes > 0

    def training_step(self, batch, batch_idx):
        images, labels = batch
        x0 = to_unit_range(images)
        if self.conditional:
            drop = torch.rand(labels.shape, device=labels.device) < self.hparams.cond_drop_prob
            labels = labels.masked_fill(drop, self.net.null_label)
        else:
            labels = None
        t = torch.randint(0, self.diffusion.timesteps, (x0.shape[0],), device=self.device)
        loss = self.diffusion.loss(self.net, x0, t, torch.randn_like(x0), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.global_step}: lower module.lr or check the data")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # Stopping through should_stop (rather than letting max_steps end the loop) makes Lightning run one last
        # validation, so every run ends with a val/loss, a sample grid and a checkpoint of its final weights.
        if 0 < self.trainer.max_steps <= self.trainer.global_step:
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        images, labels, noise, position = batch
        x0 = to_unit_range(images)
        t = (position * self.diffusion.timesteps).long()
        per_sample = self.diffusion.loss(self.net, x0, t, noise, labels if self.conditional else None, reduce=False)
        self.log("val/loss", per_sample.mean(), prog_bar=True, batch_size=len(x0), sync_dist=True)
        # Loss per noise level: which part of the schedule the model finds hard.
        buckets = self.trainer.datamodule.val_timesteps if self.trainer.datamodule else 10
        bucket = (position * buckets).long()
        for k in bucket.unique().tolist():
            mask = bucket == k
            name = f"val_by_t/{k / buckets:.2f}-{(k + 1) / buckets:.2f}"
            self.log(name, per_sample[mask].mean(), batch_size=int(mask.sum()), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches if hp.cosine_decay else None

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / max(1, hp.warmup_steps))
            if total is None or step < hp.warmup_steps:
                return warm
            progress = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
