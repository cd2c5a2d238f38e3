"""The LightningModule: a denoising network and a Gaussian diffusion, trained with the simple DDPM loss."""

import math
import time

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from ddpm.data.images import to_unit_range
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import NonFiniteError
from ddpm.validation import boolean, integer, number, probability


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch generators that training draws t, noise and label dropout from (plain tensors)."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def _plain(config) -> dict:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


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
        min_snr_gamma: float | None = None,
        cond_drop_prob: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        cosine_decay: bool = False,
        channels_last: bool = True,
    ):
        super().__init__()
        net, schedule = _plain(net), _plain(schedule)
        # 1 would never show the network a label, so the conditional model would not be trained at all.
        probability("module.cond_drop_prob", cond_drop_prob, high_open=True, hint=", e.g. 0.1")
        number("module.lr", lr, low=0, hint=", e.g. 1e-3 (0 keeps the weights as they are)")
        number("module.weight_decay", weight_decay, low=0)
        integer("module.warmup_steps", warmup_steps, low=0)
        boolean("module.cosine_decay", cosine_decay)
        boolean("module.channels_last", channels_last)
        self.save_hyperparameters(
            dict(net=net, schedule=schedule, prediction=prediction, min_snr_gamma=min_snr_gamma,
                 cond_drop_prob=cond_drop_prob, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                 cosine_decay=cosine_decay, channels_last=channels_last)
        )
        self.net = instantiate(net)
        if channels_last:
            # oneDNN's NHWC convolution kernels: 7-23% more training throughput for the 716k UNet and 6% for the 11M
            # reference on this project's CPU; about even for today's `small` (docs/speed.md).
            self.net.to(memory_format=torch.channels_last)
        self.diffusion = GaussianDiffusion(instantiate(schedule), prediction, min_snr_gamma)
        self._resumed_rng: dict | None = None
        # Training wall-clock: the seconds of earlier sessions of this run (from its checkpoint) and when this one's
        # training started. Monotonic, so that a clock change does not move it.
        self._seconds_before, self._started = 0.0, None

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
            raise NonFiniteError(f"training stopped at step {self.global_step}: the loss is {loss.item()}")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer):
        # A finite loss can still have infinite gradients; stepping on them would put NaN into the weights and into
        # the next checkpoint, so that no good checkpoint would be left.
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.parameters() if p.grad is not None])
        if not torch.isfinite(norm):
            raise NonFiniteError(f"training stopped at step {self.global_step}: the gradient norm is {norm.item()}")

    def on_save_checkpoint(self, checkpoint):
        # Lightning does not save the generators; without them a resumed run draws other t and noise.
        states = rng_states(self.device)
        if self.trainer.world_size > 1:
            # Every rank calls this hook; rank 0 writes one row per rank (NCCL gathers CUDA tensors only).
            states = {k: self.all_gather(v.to(self.device)).cpu() for k, v in states.items()}
        checkpoint["rng_states"] = states
        checkpoint["train_seconds"] = self.train_seconds

    def on_load_checkpoint(self, checkpoint):
        self._resumed_rng = checkpoint.get("rng_states")
        self._seconds_before = float(checkpoint.get("train_seconds", 0.0))

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds this run has trained, over all its sessions (resumes) and including its validations
        and sample grids: what a user waits for a model, the x-axis of quality against training time."""
        running = 0.0 if self._started is None else time.monotonic() - self._started
        return self._seconds_before + running

    def on_train_start(self):
        self._started = time.monotonic()
        # Restored here rather than on load: the sanity-check validation runs in between.
        states, self._resumed_rng = self._resumed_rng, None
        world, rank = self.trainer.world_size, self.global_rank
        own_state = False
        if states is not None:
            if states["cpu"].ndim == 2:  # one row per rank of a DDP run
                own_state = len(states["cpu"]) == world
                # clone(): torch.set_rng_state crashes on a row view of a stacked tensor (non-zero storage offset).
                states = {k: v[rank if own_state else 0].clone() for k, v in states.items()}
            set_rng_states(states, self.device)
        if world > 1 and not own_state:
            # All ranks start from the same seed (or from one saved state): without this they would draw the same
            # t and noise for their different images, which wastes most of the extra batch's noise samples.
            torch.manual_seed(int(torch.randint(2**62, ())) + rank)

    def on_train_end(self):
        rank_zero_info(f"trained to step {self.global_step} in {self.train_seconds / 60:.1f} min of training "
                       f"wall-clock (every session of this run; checkpoints hold it as train_seconds)")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # Stopping through should_stop (rather than letting max_steps end the loop) makes Lightning run one last
        # validation, so every run ends with a val/loss, a sample grid and a checkpoint of its final weights.
        if 0 < self.trainer.max_steps <= self.trainer.global_step:
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        images, labels, noise, position, log_snr = batch
        x0 = to_unit_range(images)
        labels = labels if self.conditional else None
        t = (position * self.diffusion.timesteps).long()
        per_sample = self.diffusion.loss(self.net, x0, t, noise, labels, reduce=False, weighted=False)
        self.log("val/loss", per_sample.mean(), prog_bar=True, batch_size=len(x0), sync_dist=True)
        # The error per noise level: which part of the schedule the model finds hard. Per t it compares runs of one
        # schedule; at a fixed log-SNR (each schedule's nearest t) it compares schedules, whose t mean other noise.
        self._log_groups("val_at_t", t, per_sample, lambda step: f"{step:04d}")
        t_snr, distance = self.diffusion.timestep_of_log_snr(log_snr)
        kept = distance <= 0.5  # a log-SNR outside this schedule's range has no step near it
        if kept.any():
            per_sample = self.diffusion.loss(self.net, x0[kept], t_snr[kept].to(self.device), noise[kept],
                                             labels[kept] if labels is not None else None, reduce=False, weighted=False)
            self._log_groups("val_at_logsnr", log_snr[kept], per_sample, lambda value: f"{value:+.0f}")

    def _log_groups(self, prefix: str, keys: torch.Tensor, values: torch.Tensor, name) -> None:
        for key in keys.unique().tolist():
            mask = keys == key
            self.log(f"{prefix}/{name(key)}", values[mask].mean(), batch_size=int(mask.sum()), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches if hp.cosine_decay else None
        scheduler = WarmupCosineLR(optimizer, WarmupCosine(hp.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class WarmupCosine:
    """The learning-rate factor at a step: linear warm-up over `warmup_steps`, then, with `total_steps`, a cosine
    decay that reaches 0 at step `total_steps`. An object rather than a closure so that LambdaLR saves its fields
    (plain numbers) in the checkpoint, and a resumed run knows where its decay was meant to end."""

    def __init__(self, warmup_steps: int, total_steps: float | None = None):
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.decay_start, self.decay_from = warmup_steps, 1.0  # the step the cosine starts at, and its factor there

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.total_steps is None:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / max(1, self.total_steps - self.decay_start))
        return self.decay_from * 0.5 * (1 + math.cos(math.pi * progress))

    def end_at(self, step: int, total_steps: float) -> None:
        """Move the end of the decay to `total_steps` from `step` on: the rest of the decay is a cosine from the
        factor reached at `step` down to 0, so the learning rate goes on from where it was instead of jumping."""
        if step > self.decay_start:
            self.decay_start, self.decay_from = step, self(step)
        self.total_steps = total_steps


class WarmupCosineLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR over one WarmupCosine. A run resumed with another trainer.max_steps restores the old schedule,
    then stretches (or shortens) the rest of its decay to end at the new max_steps (WarmupCosine.end_at)."""

    def load_state_dict(self, state_dict: dict) -> None:
        total = self.lr_lambdas[0].total_steps  # this run's, before the checkpoint's replaces it
        super().load_state_dict(state_dict)
        if total != self.lr_lambdas[0].total_steps:
            self.lr_lambdas[0].end_at(self.last_epoch, total)
