"""sample(cfg): draw digits from a checkpoint. `sample.py` at the top only wraps it."""

import logging
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm.cli.app import run_app
from ddpm.cli.checks import check_request
from ddpm.cli.runtime import check_writable, resolve_device, save_run_config
from ddpm.data.images import save_grid, save_picture, save_trajectory_gif, to_pixels, trajectory_strip
from ddpm.errors import ConfigError
from ddpm.files import save_tensors
from ddpm.sampling.generate import cycling_labels, generate
from ddpm.sampling.guidance import check_interval, guidance_scale, show_interval
from ddpm.sampling.setting import command_setting
from ddpm.training.checkpoint import load_module

log = logging.getLogger(__name__)


def sample(cfg: DictConfig) -> dict:
    """Writes samples.png and samples.pt (and, with trajectory=true, trajectory.png and trajectory.gif) into
    cfg.paths.output_dir; returns what it wrote."""
    check_request(cfg)
    out = Path(cfg.paths.output_dir)
    check_writable(out)
    instantiate(cfg.sampler)  # a bad sampler option is refused before the checkpoint is read
    module = load_module(cfg.ckpt, ema=cfg.ema)
    conditional = module.conditional and not cfg.unconditional
    setting, sources = command_setting(cfg, module.sampling_setting, ckpt=cfg.ckpt, conditional=conditional)
    sampler = instantiate(setting["sampler"])
    T = module.diffusion.timesteps
    sampler.set_timesteps(setting["steps"], module.diffusion.schedule)  # refuses steps > T before any work
    if cfg.digit is not None and not conditional:
        raise ConfigError(
            f"digit={cfg.digit} needs class-conditional sampling, and {cfg.ckpt} is unconditional: drop digit="
            if not module.conditional
            else f"digit={cfg.digit} needs class-conditional sampling: drop digit= or unconditional=true"
        )
    guidance = guidance_scale(setting["guidance"], conditional)
    interval = check_interval("guidance_interval", setting["guidance_interval"])

    save_run_config(cfg)
    log.info(sources)
    module.to(resolve_device(cfg.device))
    labels = cycling_labels(cfg.n, cfg.digit) if conditional else None
    within = f" at log-SNR in {show_interval(interval)}" if interval is not None and guidance else ""
    log.info(f"sampling {cfg.n} images with {sampler} (T={T}), guidance {guidance}{within}, seed {cfg.seed} on "
             f"{module.device}")
    result = generate(
        module,
        sampler,
        cfg.n,
        labels,
        guidance=guidance,
        guidance_interval=interval,
        seed=cfg.seed,
        clip_x0=cfg.clip_x0,
        batch_size=cfg.batch_size,
        trajectory_frames=cfg.trajectory_frames if cfg.trajectory else 0,
        progress="sampling",
    )

    log.info(f"{result.nfe} network evaluations per image")
    written = {"grid": save_grid(result.images, out / "samples.png", cfg.nrow), "samples": out / "samples.pt"}
    asked = labels if labels is not None else torch.full((cfg.n,), -1)
    save_tensors({"images": to_pixels(result.images).cpu(), "labels": asked}, written["samples"])
    if cfg.trajectory:
        written["trajectory"] = save_picture(trajectory_strip(result.trajectory), out / "trajectory.png")
        written["gif"] = save_trajectory_gif(result.trajectory, out / "trajectory.gif", cfg.nrow)
    for name, path in written.items():
        log.info(f"wrote {name}: {path}")
    return written


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "sample", sample)


if __name__ == "__main__":
    main()
