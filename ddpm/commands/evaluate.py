"""Score a checkpoint: sample n digits, then FID and KID (beside the real-vs-real floor at the same n), class
accuracy, confidence and class entropy (ddpm.evaluation.scores), plus sampling time and images/s.

    ddpm-evaluate ckpt=PATH n=1000 sampler=ddim steps=50 guidance=2

Needs the judge once: `ddpm-judge` (and, for classifier2=..., the second judge).
"""

import json
import logging
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm.cli.app import run_app
from ddpm.cli.checks import check_request
from ddpm.cli.runtime import resolve_device
from ddpm.evaluation.scores import build_scorer, score_sampler
from ddpm.files import write_text
from ddpm.sampling.guidance import check_interval, guidance_scale, show_interval
from ddpm.sampling.setting import command_setting
from ddpm.training.checkpoint import load_module

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    check_request(cfg)
    instantiate(cfg.sampler)  # a bad sampler option is refused before the checkpoint is read
    device = resolve_device(cfg.device)
    module = load_module(cfg.ckpt, ema=cfg.ema).to(device)
    setting, sources = command_setting(cfg, module.sampling_setting, ckpt=cfg.ckpt,
                                        conditional=module.conditional)
    sampler = instantiate(setting["sampler"])
    sampler.set_timesteps(setting["steps"], module.diffusion.schedule)  # refuse steps > T before any work
    scorer = build_scorer(cfg.data, cfg.classifier, cfg.get("classifier2"), device=device)
    scorer.check_n("n", cfg.n)
    guidance = guidance_scale(setting["guidance"], module.conditional)
    interval = check_interval("guidance_interval", setting["guidance_interval"])
    log.info(sources)
    with torch.inference_mode():
        scores = score_sampler(module, sampler, scorer, cfg.n, guidance, cfg.seed, cfg.batch_size, interval,
                               progress="sampling")
    result = {"ckpt": str(cfg.ckpt), "sampler": repr(sampler), "timesteps": module.diffusion.timesteps, "n": cfg.n,
              "guidance": guidance, "guidance_interval": show_interval(interval) or None, "seed": cfg.seed, **scores}
    log.info(f"{scores['nfe']} network evaluations per image")
    out = Path(cfg.paths.output_dir)
    write_text(out / "metrics.json", json.dumps(result, indent=2))
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                    for k, v in result.items()))
    log.info(f"wrote {out / 'metrics.json'}")
    return result


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "evaluate", evaluate)


if __name__ == "__main__":
    main()
