"""Throughput benchmark: ddpm-bench [models=[tiny,small,base]] [variants=...] [data.root=...] [out=bench.json]

Prints and writes JSON of, per model: parameters, forward FLOPs per image, training images/s (forward +
backward + AdamW, batch 128), sampling images/s of whole sampling runs (by default DDIM-50 and DPM-Solver++(2M)-20,
guided with w = 2, `sample_batch_size` images per run, both halves of classifier-free guidance in one batch), and
peak memory; plus the time the data loader spends per training batch. A reference 11M-parameter UNet of the
original notebooks' shape (one down level, 128/256/512 channels at 28x28 and 14x14, additive skips) is measured in
the same run, so the speed ratio is like for like.
"""

import json
import logging
import platform
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddpm.cli.app import run_app
from ddpm.cli.runtime import CONF, resolve_device
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule
from ddpm.errors import ConfigError
from ddpm.files import write_text
from ddpm.models.reference_unet import ReferenceUNet
from ddpm.progress import Progress
from ddpm.sampling.guidance import Guided
from ddpm.sampling.samplers import Sampler

log = logging.getLogger(__name__)


def build_models(names) -> dict[str, nn.Module]:
    models = {name: instantiate(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
              for name in names if name != "reference"}
    if "reference" in names:
        models["reference"] = ReferenceUNet()
    return models


def flops_per_image(model: nn.Module) -> float:
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 500]), torch.tensor([1, 2])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, y)
    return counter.get_total_flops() / 2


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call after `warmup` calls: on a shared machine a mean is pulled by the odd slow call."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def prepare(model: nn.Module, variant: str, device: torch.device):
    """The model and an autocast context for a variant: fp32 | channels_last | bf16 | compile."""
    model = model.to(device)
    if variant in ("channels_last", "bf16", "compile"):
        model = model.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant == "bf16")
    if variant == "compile":
        model = torch.compile(model)
    return model, autocast


def train_throughput(model, autocast, device, batch_size: int, repeats: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    diffusion = GaussianDiffusion(CosineSchedule(1000)).to(device)
    x0 = torch.rand(batch_size, 1, 28, 28, device=device) * 2 - 1
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        t = torch.randint(0, 1000, (batch_size,), device=device)
        with autocast:
            loss = diffusion.loss(model, x0, t, torch.randn_like(x0), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return batch_size / timed(step, repeats)


def sampling_throughput(model, autocast, device, sampler: Sampler, batch_size: int, guidance: float,
                        repeats: int) -> float:
    """Images per second of a whole guided sampling run on `batch_size` images, timed from noise to x_0."""
    model.eval()
    diffusion = GaussianDiffusion(CosineSchedule(1000)).to(device)
    noise = torch.randn(batch_size, 1, 28, 28, device=device)
    labels = torch.arange(batch_size, device=device) % 10

    def run():
        with autocast:
            generator = torch.Generator().manual_seed(0)
            sampler.sample(model, diffusion, noise, labels, guidance=guidance, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # One guided forward pass takes the first-call costs (allocations, kernel selection, torch.compile) out of the
    # timing; a whole warm-up run would double the time of the slow models' runs.
    with torch.inference_mode(), autocast:
        Guided(model, labels, guidance)(noise, 500)
    return batch_size / timed(run, repeats, warmup=0)


def data_seconds_per_batch(cfg) -> float:
    dm = instantiate(cfg.data, download=False, batch_size=cfg.batch_size)
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    return timed(lambda: next(loader), repeats=50, warmup=2)


def check_request(cfg: DictConfig) -> None:
    for key in ("batch_size", "sample_batch_size", "train_repeats", "sample_repeats"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} is invalid: use an integer >= 1")
    if not cfg.guidance >= 0:
        raise ConfigError(f"guidance={cfg.guidance} is invalid: use 0 (no guidance) or a positive scale such as 2")


def bench(cfg: DictConfig) -> dict:
    check_request(cfg)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    result = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": cfg.batch_size,
        "models": {},
    }
    samplers = {name: instantiate(sampler) for name, sampler in (cfg.get("samplers") or {}).items()}
    if cfg.data.root:
        result["data_seconds_per_batch"] = data_seconds_per_batch(cfg)
    models = build_models(cfg.models)
    measured = Progress(sum(len(cfg.variants) if name in cfg.variant_models else 1 for name in models), "bench",
                        unit="measurement")
    for name, model in models.items():
        entry = {"params": sum(p.numel() for p in model.parameters()), "flops_per_image": flops_per_image(model)}
        for variant in cfg.variants if name in cfg.variant_models else ["fp32"]:
            m, autocast = prepare(model, variant, device)
            speeds = {"train_images_per_s": train_throughput(m, autocast, device, cfg.batch_size, cfg.train_repeats)}
            for sampler_name, sampler in samplers.items():
                speeds[f"{sampler_name}_images_per_s"] = sampling_throughput(
                    m, autocast, device, sampler, cfg.sample_batch_size, cfg.guidance, cfg.sample_repeats)
            entry[variant] = speeds
            rates = ", ".join(f"{k.removesuffix('_images_per_s')} {v:.2f}" for k, v in speeds.items())
            log.info(f"{name:>9} {variant:>13}: {rates} img/s")
            measured.update()
        result["models"][name] = entry
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    models = result["models"]
    if "reference" in models and "small" in models:
        # Like for like: one ratio per variant measured on both (variant_models=[small,reference]).
        both = [v for v in cfg.variants if v in models["small"] and v in models["reference"]]
        result["small_vs_reference_train_speedup"] = {
            v: models["small"][v]["train_images_per_s"] / models["reference"][v]["train_images_per_s"] for v in both
        }
    text = json.dumps(result, indent=2)
    print(text)
    write_text(Path(cfg.out), text)
    return result


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "bench", bench)


if __name__ == "__main__":
    main()
