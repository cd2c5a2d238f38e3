"""Compare runs side by side in one self-contained report (report.md + PNGs + metrics.csv/json):

    python -m ddpm.compare runs=outputs/train/multiruns/<date>     # every run folder inside
    python -m ddpm.compare 'runs=[path/to/run_a,path/to/run_b]'

It shows the loss curves (from the TensorBoard events), the schedules (alpha_bar and log SNR), validation loss
per noise level, sample grids and denoising trajectories from the same noise and labels, and FID / class
accuracy against the number of sampling steps for DDIM and DDPM at each guidance scale. Runs whose overrides
differ only in `seed` are also summarised as mean and spread.
"""

import csv
import json
import logging
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib
import torch
import yaml
from omegaconf import DictConfig, ListConfig

from ddpm.cli import run_app
from ddpm.checkpoint import load_module
from ddpm.errors import ConfigError
from ddpm.evaluate import build_scorer, score_sampler
from ddpm.generate import generate
from ddpm.images import grid, trajectory_strip
from ddpm.sample import resolve_device
from ddpm.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)
SAMPLERS = {"ddim": DDIMSampler, "ddpm": lambda steps: DDPMSampler(steps=steps), "dpmpp": DPMSolverSampler}


def find_runs(runs) -> list[Path]:
    """Run folders (holding checkpoints/last.ckpt) named directly or found one level inside the given folders."""
    paths = [runs] if isinstance(runs, (str, Path)) else list(runs)
    found = []
    for path in map(Path, paths):
        if (path / "checkpoints" / "last.ckpt").is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if (p / "checkpoints" / "last.ckpt").is_file())
    if not found:
        raise ConfigError(f"no run folders with checkpoints/last.ckpt in {paths}: pass runs=<multirun folder> or runs=[run1,run2]")
    return found


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def seed_group(run: Path) -> str:
    """The run's overrides without seed: runs with the same group differ only by seed."""
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else [run.name]
    return " ".join(sorted(o for o in overrides if not o.lstrip("+").startswith("seed=") and not o.startswith("data.root="))) or "(defaults)"


class ScoreCache:
    """Scores already measured for a run, kept in the run folder: a report over more runs, or with more step
    counts, samples only what is new. Keyed by everything that changes a score: the checkpoint and the
    classifier files (by modification time), n and the seed."""

    def __init__(self, path: Path, cfg: DictConfig, checkpoint: Path):
        self.path = path
        version = lambda file: Path(file).stat().st_mtime_ns if Path(file).exists() else 0  # noqa: E731
        self.prefix = f"ckpt{version(checkpoint)}-judge{version(cfg.classifier)}-n{cfg.n}-seed{cfg.seed}"
        self.entries = json.loads(path.read_text()) if path.exists() else {}

    def _key(self, sampler: str, steps: int, guidance: float) -> str:
        return f"{self.prefix}-{sampler}-{steps}-w{guidance}"

    def get(self, sampler: str, steps: int, guidance: float) -> dict | None:
        return self.entries.get(self._key(sampler, steps, guidance))

    def put(self, sampler: str, steps: int, guidance: float, scores: dict) -> None:
        self.entries[self._key(sampler, steps, guidance)] = scores
        self.path.write_text(json.dumps(self.entries, indent=1))


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, last = [], values[0] if values else 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        out.append(last)
    return out


def plot_losses(runs, scalars, path: Path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        for ax, tag, smoothing in ((axes[0], "train/loss", 0.95), (axes[1], "val/loss", 0.0)):
            if scalars[run].get(tag):
                steps, values = zip(*scalars[run][tag])
                ax.plot(steps, smooth(list(values), smoothing), label=run.name, marker="o" if tag == "val/loss" else None, ms=3)
    for ax, title in zip(axes, ("train/loss (smoothed)", "val/loss (fixed t and noise)")):
        ax.set(title=title, xlabel="step", yscale="log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_schedules(modules, path: Path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    seen = set()
    for name, module in modules.items():
        schedule = module.diffusion.schedule
        if repr(schedule) in seen:
            continue
        seen.add(repr(schedule))
        u = (torch.arange(schedule.timesteps) + 1) / schedule.timesteps
        axes[0].plot(u, schedule.alphas_cumprod, label=repr(schedule))
        axes[1].plot(u, schedule.log_snr(), label=repr(schedule))
    axes[0].set(title="alpha_bar(t)", xlabel="t / T")
    axes[1].set(title="log SNR(t) = log(alpha_bar / (1 - alpha_bar))", xlabel="t / T")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_val_by_t(runs, scalars, path: Path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        buckets = sorted((tag, values[-1][1]) for tag, values in scalars[run].items() if tag.startswith("val_by_t/"))
        if buckets:
            mids = [sum(map(float, tag.split("/")[1].split("-"))) / 2 for tag, _ in buckets]
            ax.plot(mids, [v for _, v in buckets], marker="o", ms=3, label=run.name)
    ax.set(title="val loss per noise level (last validation)", xlabel="t / T", ylabel="loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pictures(pictures: dict[str, torch.Tensor], title: str, path: Path):
    """Pictures (3 x H x W in [0, 1]) side by side, one per run, titled with the run's name."""
    fig, axes = plt.subplots(1, len(pictures), figsize=(4 * len(pictures), 4.4), squeeze=False)
    for ax, (name, picture) in zip(axes[0], pictures.items()):
        ax.imshow(picture.permute(1, 2, 0).numpy())
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_metric_vs_steps(rows, metric: str, path: Path):
    samplers = sorted({r["sampler"] for r in rows})
    fig, axes = plt.subplots(1, len(samplers), figsize=(6 * len(samplers), 4), squeeze=False)
    for ax, sampler in zip(axes[0], samplers):
        curves = defaultdict(list)
        for r in rows:
            if r["sampler"] == sampler and metric in r:
                curves[(r["run"], r["guidance"])].append((r["steps"], r[metric]))
        for (run, guidance), points in sorted(curves.items()):
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, marker="o", ms=3, label=f"{run} w={guidance}")
        ax.set(title=f"{metric} vs steps: {sampler}", xlabel="sampling steps", xscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_summary(rows, groups: dict[str, str]) -> list[dict]:
    """Mean and standard deviation over runs that differ only by seed, per sampler, guidance and steps."""
    cells = defaultdict(list)
    for r in rows:
        cells[(groups[r["run"]], r["sampler"], r["guidance"], r["steps"])].append(r)
    summary = []
    for (group, sampler, guidance, steps), members in sorted(cells.items()):
        if len(members) < 2:
            continue
        entry = {"group": group, "sampler": sampler, "guidance": guidance, "steps": steps, "seeds": len(members)}
        for metric in ("fid", "class_accuracy"):
            values = [m[metric] for m in members if metric in m]
            if values:
                entry[metric] = statistics.mean(values)
                entry[f"{metric}_std"] = statistics.stdev(values)
        summary.append(entry)
    return summary


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def compare(cfg: DictConfig) -> Path:
    runs = find_runs(list(cfg.runs) if isinstance(cfg.runs, ListConfig) else cfg.runs)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    modules = {run: load_module(run / "checkpoints" / "last.ckpt").to(device) for run in runs}
    scalars = {run: read_scalars(run) for run in runs}
    groups = {run.name: seed_group(run) for run in runs}
    scorer, floor = build_scorer(cfg)
    log.info(f"comparing {len(runs)} runs; real-vs-real FID floor {floor:.3f}")

    plot_losses(runs, scalars, out / "loss_curves.png")
    plot_schedules({run.name: m for run, m in modules.items()}, out / "schedules.png")
    plot_val_by_t(runs, scalars, out / "val_by_t.png")

    guidance0 = cfg.guidance[0]
    grid_sampler = DDIMSampler(cfg.grid_steps)
    grids, strips = {}, {}
    with torch.inference_mode():
        for run, module in modules.items():
            labels = torch.arange(10).repeat_interleave(10) if module.conditional else None
            result = generate(module, grid_sampler, 100, labels, guidance0, cfg.seed, trajectory_frames=8)
            grids[run.name] = grid(result.images)
            # ten digits 0-9 (every tenth image of the row-per-digit grid), one row each
            strips[run.name] = trajectory_strip([(t, x[::10]) for t, x in result.trajectory])

        rows = []
        for run, module in modules.items():
            T = module.diffusion.timesteps
            cache = ScoreCache(run / "scores.json", cfg, run / "checkpoints" / "last.ckpt")
            for steps in sorted({s for s in cfg.steps if s <= T} | ({T} if cfg.add_T else set())):
                for sampler_name in cfg.samplers:
                    for guidance in cfg.guidance:
                        scores = cache.get(sampler_name, steps, guidance)
                        if scores is None:
                            sampler = SAMPLERS[sampler_name](steps)
                            scores = score_sampler(module, sampler, scorer, cfg.n, guidance if module.conditional else 0.0,
                                                   cfg.seed, cfg.batch_size)
                            cache.put(sampler_name, steps, guidance, scores)
                        rows.append({"run": run.name, "sampler": sampler_name, "guidance": guidance, "steps": steps, **scores})
                        log.info(f"{run.name} {sampler_name}-{steps} w={guidance}: FID {scores['fid']:.3f}, "
                                 f"accuracy {scores.get('class_accuracy', float('nan')):.3f}, {scores['images_per_second']:.1f} img/s")

    plot_pictures(grids, f"DDIM-{cfg.grid_steps}, w={guidance0}: same noise, row k = digit k", out / "grids.png")
    plot_pictures(strips, f"denoising trajectory (DDIM-{cfg.grid_steps}), noise left, sample right", out / "trajectories.png")
    plot_metric_vs_steps(rows, "fid", out / "fid_vs_steps.png")
    plot_metric_vs_steps(rows, "class_accuracy", out / "accuracy_vs_steps.png")
    summary = seed_summary(rows, groups)

    columns = ["run", "sampler", "guidance", "steps", "fid", "class_accuracy", "confidence", "class_entropy", "images_per_second"]
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "metrics.json").write_text(json.dumps({"fid_real_floor": floor, "rows": rows, "seed_summary": summary}, indent=2))

    report = [
        "# Schedule comparison",
        f"Runs: {', '.join(f'`{run.name}`' for run in runs)}. Samples per point: {cfg.n}, sampling seed {cfg.seed}. "
        f"FID is measured in the feature space of the project's MNIST classifier against the 10k test images; "
        f"**real-vs-real floor (10k training images): {floor:.3f}**.",
        "## Loss curves\n![loss curves](loss_curves.png)",
        "## Schedules\n![schedules](schedules.png)",
        "## Validation loss per noise level\n![val loss by t](val_by_t.png)",
        f"## Samples (same noise and labels)\n![grids](grids.png)",
        "## Denoising trajectories\n![trajectories](trajectories.png)",
        "## Quality against sampling steps\n![FID vs steps](fid_vs_steps.png)\n![accuracy vs steps](accuracy_vs_steps.png)",
        markdown_table(rows, columns),
    ]
    if summary:
        report += ["## Mean and spread over seeds",
                   markdown_table(summary, ["group", "sampler", "guidance", "steps", "seeds", "fid", "fid_std", "class_accuracy", "class_accuracy_std"])]
    (out / "report.md").write_text("\n\n".join(report) + "\n")
    log.info(f"wrote {out / 'report.md'}")
    return out / "report.md"


if __name__ == "__main__":
    run_app("compare", compare)
