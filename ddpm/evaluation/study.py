"""Scoring the points of a compare report on one run: each checkpoint loaded once, each (sampler, steps, guidance,
guidance interval) sampled and scored once, bits/dim per checkpoint, all through the run's score cache; and each
arm's sample grid, in the arm's own sampling setting."""

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from ddpm.data.images import grid
from ddpm.diffusion.likelihood import bits_per_dim
from ddpm.evaluation.cache import ScoreCache
from ddpm.evaluation.points import Point
from ddpm.evaluation.runs import Run, checkpoints
from ddpm.evaluation.scores import score_sampler
from ddpm.sampling.generate import cycling_labels, digit_grid
from ddpm.sampling.guidance import Guided, show_interval
from ddpm.sampling.samplers import Sampler
from ddpm.training.checkpoint import load_checkpoint, load_module

log = logging.getLogger(__name__)


def checkpoint_bits_per_dim(cache: ScoreCache, ckpt, loaded: Callable, cfg: DictConfig, test_images, device,
                            name: str) -> dict:
    """The variational bound of a checkpoint on cfg.nll.n test images (none when 0), through the run's cache;
    `loaded()` gives the checkpoint's module, loaded on first use."""
    if cfg.nll.n <= 0:
        return {}
    what = f"bpd-n{cfg.nll.n}-draws{cfg.nll.draws}-{cfg.nll.variance}"
    nll = cache.get(ckpt, what)
    if nll is None:
        m = loaded()
        result = bits_per_dim(m.net, m.diffusion, test_images[: cfg.nll.n], draws=cfg.nll.draws,
                              variance=cfg.nll.variance, batch_size=cfg.batch_size, seed=cfg.seed, device=device,
                              progress=f"{name} bits/dim")
        nll = cache.put(ckpt, what, {"bits_per_dim": result["bits_per_dim"], "bits_per_dim_stderr": result["stderr"]})
        log.info(f"{name}: {nll['bits_per_dim']:.4f} +- {nll['bits_per_dim_stderr']:.4f} bits/dim")
    return nll


def checkpoint_meta(cache: ScoreCache, ckpt: Path) -> dict:
    """The checkpoint's step and the minutes it had trained (None where it was written before training recorded its
    wall-clock), read once and cached."""
    meta = cache.get(ckpt, "meta")
    if meta is None or "train_minutes" not in meta:  # cached before checkpoints held their wall-clock
        checkpoint = load_checkpoint(ckpt)
        seconds = checkpoint.get("train_seconds")
        meta = cache.put(ckpt, "meta", {"train_step": int(checkpoint["global_step"]),
                                        "train_minutes": None if seconds is None else seconds / 60})
    return meta


def score_run(run: Run, points: list[Point], first: bool, cfg: DictConfig, scorer, test_images, device,
              make_sampler: Callable[[str], Sampler]) -> list[dict]:
    """One row per (checkpoint, point) of this run; sampled and scored unless cached. `first`: the run is its arm's
    first seed (points with seeds=first are scored only there)."""
    cache = ScoreCache(run.path, cfg)
    # checkpoint -> the points to score there, each (sampler, steps, guidance, interval) once
    wanted = defaultdict(dict)
    for point in points:
        if point.seeds == "all" or first:
            for ckpt in checkpoints(run.path, point.checkpoints):
                wanted[ckpt].setdefault((point.sampler, point.steps, point.guidance, point.guidance_interval), point)
    rows = []
    for ckpt, ckpt_points in wanted.items():
        module = None

        def loaded():
            nonlocal module
            if module is None:
                module = load_module(ckpt).to(device)
            return module

        meta = checkpoint_meta(cache, ckpt)
        train_step = meta["train_step"]
        nll = checkpoint_bits_per_dim(cache, ckpt, loaded, cfg, test_images, device, f"{run.name} step {train_step}")
        for point in ckpt_points.values():
            interval = show_interval(point.guidance_interval)
            sampler = make_sampler(point.sampler)
            # Points without an interval, and samplers at evenly spaced steps, keep the cache keys of the scores cached
            # before intervals and other spacings existed.
            what = (f"{point.sampler}-{point.steps}-w{point.guidance:g}" + (f"-i{interval}" if interval else "")
                    + (f"-{sampler.spacing}" if sampler.spacing else ""))
            scores = cache.get(ckpt, what)
            if scores is None or "nfe" not in scores:
                m = loaded()
                T = m.diffusion.timesteps
                steps = T if point.steps == "T" else point.steps
                if steps > T:
                    continue  # a step count beyond this run's T (e.g. 1000-step points on a T = 300 run)
                timesteps = sampler.set_timesteps(steps, m.diffusion.schedule)
                if scores is not None:  # cached before NFE was recorded: it follows from the steps, no sampling
                    labels = cycling_labels(cfg.n) if m.conditional else None  # as score_sampler's
                    guided = Guided(m.net, labels, point.guidance, point.guidance_interval, m.diffusion.log_snr)
                    nfe = guided.planned_nfe(sampler.evaluations(timesteps))
                    scores = cache.put(ckpt, what, {**scores, "nfe": nfe})
            if scores is None:
                name = f"{run.name} step {train_step} {what}"
                with torch.inference_mode():
                    scores = score_sampler(m, sampler, scorer, cfg.n, point.guidance, cfg.seed, cfg.batch_size,
                                           point.guidance_interval, progress=name)
                cache.put(ckpt, what, scores)
                log.info(f"{name}: FID {scores['fid']:.2f} "
                         f"(floor {scores['fid_floor']:.2f}), KID {scores['kid']:.4f}, "
                         f"accuracy {scores.get('class_accuracy', float('nan')):.3f}, "
                         f"{scores['images_per_second']:.0f} img/s, {scores['nfe']} NFE")
            steps = run.T if point.steps == "T" else point.steps
            rows.append({"run": run.name, "arm": run.arm, "schedule": run.schedule, "loss": run.loss, "T": run.T,
                         "seed": run.seed, "budget": run.budget, "train_step": train_step,
                         "train_minutes": meta["train_minutes"], "sampler": point.sampler,
                         "steps": steps, "guidance": point.guidance, "guidance_interval": interval, "n": cfg.n, **nll,
                         **scores})
    return rows


@dataclass(frozen=True)
class GridSetting:
    """The setting an arm's sample grid is drawn with, and the line that says where each value came from
    (ddpm.sampling.setting)."""
    sampler: Sampler
    guidance: float
    guidance_interval: tuple[float, float] | None
    sources: str

    def __str__(self) -> str:
        where = f" in log-SNR {show_interval(self.guidance_interval)}" if self.guidance_interval else ""
        return f"{self.sampler!r}, w={self.guidance:g}{where}"


def arm_pictures(representatives: dict[str, Run], settings: dict[str, GridSetting], seed: int,
                 device) -> tuple[dict, list]:
    """Each arm's 10x10 picture from its first seed's last checkpoint in the arm's own setting (row k = digit k, the
    same noise for every arm), and the arms' noise schedules, each once."""
    pictures, schedules = {}, {}
    with torch.inference_mode():
        for arm, run in sorted(representatives.items()):
            module = load_module(run.path / "checkpoints" / "last.ckpt").to(device)
            schedules.setdefault(repr(module.diffusion.schedule), module.diffusion.schedule)
            s = settings[arm]
            pictures[arm] = grid(digit_grid(module, s.sampler, s.guidance, seed, s.guidance_interval))
    return pictures, list(schedules.values())
