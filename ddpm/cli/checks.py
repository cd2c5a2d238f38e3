"""The checks of what the commands take that no constructor of the library receives: Lightning's Trainer options that a
user types often (train), and the request of the commands that sample from a checkpoint (sample, evaluate). They use
the helpers of ddpm.validation, so that every refusal reads the same."""

from contextlib import contextmanager

from ddpm.errors import ConfigError
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.samplers import check_steps
from ddpm.validation import boolean, device, integer, is_number, number, one_of, positive_int, show


def lightning_precisions() -> list[str]:
    """The `precision` values Lightning accepts, read from its own type (typed as 16, "16-mixed", "bf16", ...)."""
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    values = [str(value) for kind in get_args(_PRECISION_INPUT) for value in get_args(kind)]
    return list(dict.fromkeys(values))


@contextmanager
def refused_by_lightning(group: str):
    """Lightning checks accelerator, devices and strategy itself, against the machine, when the Trainer is built,
    and its messages name the argument (`Trainer(devices=0)` ...); they become one line instead of a traceback."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (InstantiationException, MisconfigurationException, ValueError, TypeError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise
        raise ConfigError(f"{group}: Lightning refuses these settings: {' '.join(str(cause).split())}") from e


def check_train_options(cfg) -> None:
    """The options of `python train.py` that no constructor of ours receives: the seed, Lightning's Trainer
    arguments that a user types often, and the callbacks that Lightning provides. Lightning would refuse some of
    these with a traceback, and accept others (a negative max_steps) with surprising results."""
    # seed_everything takes 32-bit seeds.
    integer("seed", cfg.get("seed"), low=0, high=2**32 - 1)
    trainer = cfg.trainer
    for key in ("max_steps", "max_epochs"):
        # 0 would end the run before its first step; of the negative values Lightning reads only -1 as "no limit".
        value = trainer.get(key)
        if value is not None and value != -1:
            integer(f"trainer.{key}", value, low=1, hint=", or -1 for no limit")
    interval = trainer.get("val_check_interval")
    if interval is not None and not (isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1):
        number("trainer.val_check_interval", interval, 0, 1, low_open=True,
               hint=" (a fraction of an epoch), or an integer >= 1 (every N steps)")
    integer("trainer.check_val_every_n_epoch", trainer.get("check_val_every_n_epoch"), low=1, optional=True)
    integer("trainer.num_sanity_val_steps", trainer.get("num_sanity_val_steps", 2), low=-1, hint=" (-1: all)")
    integer("trainer.log_every_n_steps", trainer.get("log_every_n_steps", 50), low=1)
    integer("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), low=1)
    number("trainer.gradient_clip_val", trainer.get("gradient_clip_val"), low=0, optional=True,
           hint=" (0 or null: no clipping)")
    one_of("trainer.gradient_clip_algorithm", trainer.get("gradient_clip_algorithm", "norm"), ("norm", "value"))
    one_of("trainer.precision", str(trainer.get("precision", "32-true")), ["auto", *lightning_precisions()])
    boolean("trainer.enable_progress_bar", trainer.get("enable_progress_bar", True))
    callbacks = cfg.get("callbacks") or {}
    if callbacks.get("ema"):
        number("callbacks.ema.decay", callbacks.ema.get("decay"), 0, 1, low_open=True, high_open=True,
               hint=", e.g. 0.999")
        number("callbacks.ema.power", callbacks.ema.get("power"), low=0, low_open=True, optional=True,
               hint=", e.g. 6.94 (sigma_rel 0.10), or null for the constant decay")
    if callbacks.get("periodic_checkpoint"):
        positive_int("callbacks.periodic_checkpoint.every_n_train_steps",
                     callbacks.periodic_checkpoint.get("every_n_train_steps"), optional=True)


def check_request(cfg) -> None:
    """The options of the commands that sample from a checkpoint (sample, evaluate), each checked when the command
    has it; before the checkpoint is read or anything written."""
    positive_int("n", cfg.n, hint=", e.g. n=100")
    number("guidance", cfg.guidance, low=0, hint=" (0: no guidance; larger: more legible, less varied digits)")
    check_interval("guidance_interval", cfg.get("guidance_interval"))
    # Up to the schedule's T, which the sampler's set_timesteps checks once the checkpoint is read.
    check_steps(cfg.get("steps"), optional=True, null="the sampler's default")
    integer("seed", cfg.seed, low=0, high=2**32 - 1)
    digit = cfg.get("digit")
    if digit is not None and (not is_number(digit) or digit not in range(10)):
        raise ConfigError(f"digit={show(digit)} is not a class label: use 0-9, or drop digit= to cycle through all ten")
    for key in ("ema", "clip_x0", "unconditional", "trajectory"):
        if key in cfg:
            boolean(key, cfg[key])
    for key in ("batch_size", "nrow"):
        if key in cfg:
            positive_int(key, cfg[key])
    if "trajectory_frames" in cfg:
        integer("trajectory_frames", cfg.trajectory_frames, low=2)
    device("device", cfg.get("device", "auto"))
