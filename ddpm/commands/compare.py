"""Compare runs side by side in one report: report.md, results.csv (one row per run, checkpoint, sampler, steps
and guidance), summary.csv (mean and spread over seeds) and figures.

    python -m ddpm.compare runs=outputs/train/multiruns/<date>_<time>     # every run folder inside
    python -m ddpm.compare 'runs=[path/to/run_a,path/to/run_b]' plan=quick

Which points are scored is the `plan` group (conf/plan/, or an inline `points=[...]`): sampler, step counts, guidance scales, and
whether at the last checkpoint only or also at the milestones (1/4, 1/2, 3/4 of the run). Runs are grouped into
arms by schedule, loss, T and training budget; runs of one arm differ by seed. Every FID stands beside the
real-vs-real floor at the same n, every KID has its spread, a second judge gives a second feature space, and
each checkpoint gets its variational bound in bits/dim. Scores are cached in each run folder (scores.json), so
a report over more runs or more points samples only what is new.
"""

import csv
import json
import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ddpm.cli.app import run_app
from ddpm.cli.runtime import resolve_device
from ddpm.data.images import grid
from ddpm.data.mnist import load_mnist_split
from ddpm.diffusion.likelihood import VARIANCES, bits_per_dim
from ddpm.errors import ConfigError
from ddpm.evaluation import plots
from ddpm.evaluation.scoring import build_scorer, score_sampler
from ddpm.sampling.generate import generate
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler
from ddpm.training.checkpoint import load_checkpoint, load_module
from ddpm.validation import integer, number, one_of, positive_int

log = logging.getLogger(__name__)
SAMPLERS = {
    "ddim": lambda steps: DDIMSampler(steps),
    "dpmpp": lambda steps: DPMSolverSampler(steps),
    "ddpm": lambda steps: DDPMSampler(steps),  # posterior variance beta~_t
    "ddpm_beta": lambda steps: DDPMSampler(steps, variance="beta"),  # sigma^2 = beta_t, as the original notebooks
}
RESULT_COLUMNS = ["run", "schedule", "loss", "T", "seed", "train_step", "sampler", "steps", "guidance", "n", "fid",
                  "fid_floor", "kid", "kid_std", "class_accuracy", "bits_per_dim", "bits_per_dim_stderr",
                  "fid_judge2", "fid_floor_judge2", "kid_judge2", "kid_std_judge2", "kid_floor", "kid_floor_judge2",
                  "confidence", "class_entropy", "images_per_second", "budget"]
SUMMARY_METRICS = ["fid", "kid", "class_accuracy", "fid_judge2", "kid_judge2", "bits_per_dim"]
POINT_KEYS = {"sampler", "steps", "guidance", "checkpoints", "seeds"}


@dataclass(frozen=True)
class Point:
    sampler: str
    steps: int | str  # a number, or "T": all of the run's timesteps
    guidance: float
    checkpoints: str  # last | milestones
    seeds: str  # all | first


@dataclass
class Run:
    path: Path
    schedule: str
    loss: str
    T: int
    seed: int
    budget: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def arm(self) -> str:
        return f"{self.schedule}, {self.loss}, T={self.T}, {self.budget} steps"


def expand_points(points) -> list[Point]:
    """The configured point groups as single points; every value is checked before anything is sampled."""
    expanded = []
    for group in points:
        unknown = set(group) - POINT_KEYS
        if unknown:
            raise ConfigError(f"points entry {dict(group)} has unknown keys {sorted(unknown)}: use {sorted(POINT_KEYS)}")
        sampler = group.get("sampler")
        if sampler not in SAMPLERS:
            raise ConfigError(f"points: sampler={sampler} is unknown: use one of {', '.join(SAMPLERS)}")
        checkpoints, seeds = group.get("checkpoints", "last"), group.get("seeds", "all")
        if checkpoints not in ("last", "milestones"):
            raise ConfigError(f"points: checkpoints={checkpoints} is unknown: use last or milestones")
        if seeds not in ("all", "first"):
            raise ConfigError(f"points: seeds={seeds} is unknown: use all or first")
        for steps in group.get("steps", [50]):
            if steps != "T" and not (isinstance(steps, int) and steps >= 1):
                raise ConfigError(f"points: steps={steps} is invalid: use a positive integer or T (all timesteps)")
            for guidance in group.get("guidance", [2.0]):
                if not (isinstance(guidance, (int, float)) and guidance >= 0):
                    raise ConfigError(f"points: guidance={guidance} is invalid: use a number >= 0")
                expanded.append(Point(sampler, steps, float(guidance), checkpoints, seeds))
    return list(dict.fromkeys(expanded))


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


def describe(path: Path) -> Run:
    """Schedule, loss, T, seed and budget of a run, from its saved config (else from its checkpoint)."""
    config_file = path / ".hydra" / "config.yaml"
    if config_file.exists():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
        module, seed, budget = config["module"], config.get("seed", -1), config.get("trainer", {}).get("max_steps", -1)
        schedule = config["schedule"]
        prediction, gamma = module.get("prediction", "eps"), module.get("min_snr_gamma")
    else:
        hparams = load_checkpoint(path / "checkpoints" / "last.ckpt")["hyper_parameters"]
        schedule, seed, budget = hparams["schedule"], -1, -1
        prediction, gamma = hparams.get("prediction", "eps"), hparams.get("min_snr_gamma")
    name = str(schedule["_target_"]).rsplit(".", 1)[-1].removesuffix("Schedule").lower()
    loss = prediction if gamma is None else f"{prediction}, min-SNR-{gamma:g}"
    return Run(path, name, loss, int(schedule.get("timesteps", 1000)), int(seed), int(budget))


def checkpoints(run: Path, which: str) -> list[Path]:
    last = [run / "checkpoints" / "last.ckpt"]
    return last if which == "last" else sorted((run / "checkpoints").glob("milestone_step_*.ckpt")) + last


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class ScoreCache:
    """Scores already measured for a run, in its folder; keyed by everything that changes a score: the checkpoint
    and the judges (file and modification time), n, seed, batch size (the stochastic samplers' streams are per
    batch) and the point."""

    def __init__(self, run: Path, cfg: DictConfig):
        self.path = run / "scores.json"
        version = lambda file: f"{Path(file).name}@{Path(file).stat().st_mtime_ns}" if file and Path(file).exists() else "none"  # noqa: E731
        self.judges = f"{version(cfg.classifier)}+{version(cfg.get('classifier2'))}"
        self.version = version
        self.settings = f"n{cfg.n}-seed{cfg.seed}-bs{cfg.batch_size}"
        self.entries = json.loads(self.path.read_text()) if self.path.exists() else {}

    def key(self, ckpt: Path, what: str) -> str:
        return f"{self.version(ckpt)}|{self.judges}|{self.settings}|{what}"

    def get(self, ckpt: Path, what: str) -> dict | None:
        return self.entries.get(self.key(ckpt, what))

    def put(self, ckpt: Path, what: str, value: dict) -> dict:
        self.entries[self.key(ckpt, what)] = value
        self.path.write_text(json.dumps(self.entries, indent=1))
        return value


def score_run(run: Run, points: list[Point], first: bool, cfg: DictConfig, scorer, test_images, device) -> list[dict]:
    """One row per (checkpoint, point) of this run; sampled and scored unless cached."""
    cache = ScoreCache(run.path, cfg)
    wanted = defaultdict(dict)  # checkpoint -> the points to score there, each (sampler, steps, guidance) once
    for point in points:
        if point.seeds == "all" or first:
            for ckpt in checkpoints(run.path, point.checkpoints):
                wanted[ckpt].setdefault((point.sampler, point.steps, point.guidance), point)
    rows = []
    for ckpt, ckpt_points in wanted.items():
        module = None

        def loaded():
            nonlocal module
            if module is None:
                module = load_module(ckpt).to(device)
            return module

        meta = cache.get(ckpt, "meta") or cache.put(ckpt, "meta", {"train_step": int(load_checkpoint(ckpt)["global_step"])})
        train_step = meta["train_step"]
        nll = {}
        if cfg.nll.n > 0:
            what = f"bpd-n{cfg.nll.n}-draws{cfg.nll.draws}-{cfg.nll.variance}"
            nll = cache.get(ckpt, what)
            if nll is None:
                m = loaded()
                result = bits_per_dim(m.net, m.diffusion, test_images[: cfg.nll.n], draws=cfg.nll.draws,
                                      variance=cfg.nll.variance, batch_size=cfg.batch_size, seed=cfg.seed, device=device)
                nll = cache.put(ckpt, what, {"bits_per_dim": result["bits_per_dim"], "bits_per_dim_stderr": result["stderr"]})
                log.info(f"{run.name} step {train_step}: {nll['bits_per_dim']:.4f} +- {nll['bits_per_dim_stderr']:.4f} bits/dim")
        for point in ckpt_points.values():
            what = f"{point.sampler}-{point.steps}-w{point.guidance:g}"
            scores = cache.get(ckpt, what)
            if scores is None:
                m = loaded()
                T = m.diffusion.timesteps
                steps = T if point.steps == "T" else point.steps
                if steps > T:
                    continue  # a step count beyond this run's T (e.g. 1000-step points on a T = 300 run)
                sampler = SAMPLERS[point.sampler](None if point.sampler.startswith("ddpm") and steps == T else steps)
                with torch.inference_mode():
                    scores = score_sampler(m, sampler, scorer, cfg.n, point.guidance if m.conditional else 0.0, cfg.seed,
                                           cfg.batch_size)
                cache.put(ckpt, what, scores)
                log.info(f"{run.name} step {train_step} {what}: FID {scores['fid']:.2f} (floor {scores['fid_floor']:.2f}), "
                         f"KID {scores['kid']:.4f}, accuracy {scores.get('class_accuracy', float('nan')):.3f}, "
                         f"{scores['images_per_second']:.0f} img/s")
            steps = run.T if point.steps == "T" else point.steps
            rows.append({"run": run.name, "arm": run.arm, "schedule": run.schedule, "loss": run.loss, "T": run.T,
                         "seed": run.seed, "budget": run.budget, "train_step": train_step, "sampler": point.sampler,
                         "steps": steps, "guidance": point.guidance, "n": cfg.n, **nll, **scores})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over the seeds of each arm, per checkpoint step, sampler, steps and guidance."""
    cells = defaultdict(list)
    for r in rows:
        cells[(r["arm"], r["train_step"], r["sampler"], r["steps"], r["guidance"], r["n"])].append(r)
    summary = []
    for (arm, train_step, sampler, steps, guidance, n), members in sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0]))):
        entry = {"arm": arm, "train_step": train_step, "sampler": sampler, "steps": steps, "guidance": guidance, "n": n,
                 "seeds": len(members), "fid_floor": members[0].get("fid_floor"),
                 "fid_floor_judge2": members[0].get("fid_floor_judge2")}
        for metric in SUMMARY_METRICS:
            values = [m[metric] for m in members if m.get(metric) is not None]
            if values:
                entry[metric] = statistics.mean(values)
                entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(entry)
    return summary


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def merge_results(path: Path, rows: list[dict]) -> None:
    """Add rows to a results.csv that other reports wrote too, replacing the ones measured again."""
    key = lambda r: tuple(str(r[c]) for c in ("run", "train_step", "sampler", "steps", "guidance", "n"))  # noqa: E731
    existing = list(csv.DictReader(open(path))) if path.exists() else []
    new = {key(r) for r in rows}
    merged = [r for r in existing if key(r) not in new] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, sorted(merged, key=lambda r: tuple(map(str, key(r)))), RESULT_COLUMNS)


def fmt(value, std=None) -> str:
    if value is None or value == "":
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} ± {std:.2g}" if std is not None else text


def check_options(cfg: DictConfig) -> None:
    """compare.yaml's own settings, before any run is read."""
    integer("n", cfg.n, low=2, hint=", e.g. 1000 (KID needs two samples)")
    integer("seed", cfg.seed, low=0, high=2**32 - 1)
    number("main_guidance", cfg.main_guidance, low=0)
    positive_int("grid_steps", cfg.grid_steps)
    positive_int("batch_size", cfg.batch_size)
    positive_int("floor_subsets", cfg.floor_subsets)
    integer("nll.n", cfg.nll.n, low=0, hint=" (0: no bits/dim)")
    positive_int("nll.draws", cfg.nll.draws)
    one_of("nll.variance", cfg.nll.variance, VARIANCES)


def compare(cfg: DictConfig) -> Path:
    check_options(cfg)
    points = expand_points(cfg.points)
    paths = find_runs(list(cfg.runs) if isinstance(cfg.runs, ListConfig) else cfg.runs)
    out = Path(cfg.paths.output_dir)
    device = resolve_device(cfg.device)
    runs = [describe(p) for p in paths]
    scorer = build_scorer(cfg.data, cfg.classifier, cfg.get("classifier2"), cfg.floor_subsets, device)
    test_images, _ = load_mnist_split(cfg.data.root, "test", cfg.data.download, cfg.data.check_md5)
    out.mkdir(parents=True, exist_ok=True)
    first_seed = {}
    for run in runs:
        first_seed[run.arm] = min(first_seed.get(run.arm, run.seed), run.seed)
    representatives = {run.arm: run for run in runs if run.seed == first_seed[run.arm]}
    log.info(f"comparing {len(runs)} runs in {len(representatives)} arms at {len(points)} points, n={cfg.n}")

    rows = []
    for run in runs:
        rows += score_run(run, points, run.seed == first_seed[run.arm], cfg, scorer, test_images, device)
    summary = summarise(rows)
    write_csv(out / "results.csv", rows, RESULT_COLUMNS)
    write_csv(out / "summary.csv", summary, ["arm", "train_step", "sampler", "steps", "guidance", "n", "seeds", "fid_floor",
                                             "fid_floor_judge2"] + [f"{m}{s}" for m in SUMMARY_METRICS for s in ("", "_std")])
    if cfg.results:
        merge_results(Path(cfg.results), rows)
    figures = draw_figures(cfg, runs, representatives, summary, out, device)
    write_report(cfg, runs, summary, figures, out)
    log.info(f"wrote {out / 'report.md'}")
    return out / "report.md"


def draw_figures(cfg, runs: list[Run], representatives: dict[str, Run], summary: list[dict], out: Path, device) -> list[str]:
    figures = []
    last_step = {arm: max(r["train_step"] for r in summary if r["arm"] == arm) for arm in {r["arm"] for r in summary}}
    final = [r for r in summary if r["train_step"] == last_step[r["arm"]]]
    at_w = [r for r in final if r["guidance"] == cfg.main_guidance]
    floors = {r["sampler"]: r["fid_floor"] for r in at_w}
    for metric in ("fid", "kid", "fid_judge2"):
        name = f"{metric}_vs_steps.png"
        if plots.metric_curves(at_w, metric, "steps", "sampler", out / name, floors if metric == "fid" else None,
                               title=f"last checkpoint, w={cfg.main_guidance:g}, n={cfg.n}: "):
            figures.append(name)
    # Training length and guidance are read at one sampler, DDIM at the grids' step count (50 by default).
    ddim = [r for r in summary if r["sampler"] == "ddim" and r["steps"] == cfg.grid_steps]
    label = f"DDIM-{cfg.grid_steps}, n={cfg.n}: "
    drawn = {
        "fid_vs_train_steps.png": plots.metric_curves(ddim, "fid", "train_step", "guidance", out / "fid_vs_train_steps.png",
                                                      {r["guidance"]: r["fid_floor"] for r in ddim}, xscale="linear",
                                                      title=label, yscale="log"),
        "kid_vs_train_steps.png": plots.metric_curves(ddim, "kid", "train_step", "guidance", out / "kid_vs_train_steps.png",
                                                      xscale="linear", title=label, yscale="log"),
        "guidance_tradeoff.png": plots.tradeoff([r for r in final if r in ddim], "class_accuracy", "fid",
                                                out / "guidance_tradeoff.png", f"{label}over guidance w, last checkpoint",
                                                floor=next((r["fid_floor"] for r in ddim), None)),
    }
    figures += [name for name, written in drawn.items() if written]

    curves = defaultdict(lambda: defaultdict(list))
    scalars = {run.name: read_scalars(run.path) for run in runs}
    for run in runs:
        for tag, values in scalars[run.name].items():
            if tag.startswith("val_at_logsnr/"):
                curves[run.arm][float(tag.split("/")[1])].append(values[-1][1])
    if curves:
        plots.val_by_log_snr({arm: [(x, statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for x, v in per.items()]
                              for arm, per in curves.items()}, out / "val_by_log_snr.png")
        figures.append("val_by_log_snr.png")
    bpd = {r["arm"]: (r["bits_per_dim"], r.get("bits_per_dim_std") or 0.0) for r in final if r.get("bits_per_dim") is not None}
    if bpd:
        plots.bars(bpd, "bits/dim (lower is better)", f"variational bound, last checkpoint, {cfg.nll.n} test images", out / "bits_per_dim.png")
        figures.append("bits_per_dim.png")
    plots.loss_curves({f"{arm} (seed {run.seed})": scalars[run.name] for arm, run in representatives.items()}, out / "loss_curves.png")
    grids, seen = {}, {}
    grid_sampler = DDIMSampler(cfg.grid_steps)
    with torch.inference_mode():
        for arm, run in sorted(representatives.items()):
            module = load_module(run.path / "checkpoints" / "last.ckpt").to(device)
            seen.setdefault(repr(module.diffusion.schedule), module.diffusion.schedule)
            labels = torch.arange(10).repeat_interleave(10) if module.conditional else None
            grids[f"{arm} (seed {run.seed})"] = grid(generate(module, grid_sampler, 100, labels, cfg.main_guidance, cfg.seed).images)
    plots.schedules(list(seen.values()), out / "schedules.png")
    plots.pictures(grids, f"DDIM-{cfg.grid_steps}, w={cfg.main_guidance:g}, the same noise: row k = digit k", out / "grids.png")
    return figures + ["loss_curves.png", "schedules.png", "grids.png"]


def write_report(cfg, runs: list[Run], summary: list[dict], figures: list[str], out: Path) -> None:
    floors = sorted({(r["n"], r["fid_floor"]) for r in summary if r.get("fid_floor") is not None})
    columns = ["arm", "train_step", "sampler", "steps", "guidance", "seeds", "fid", "fid_floor", "kid", "class_accuracy",
               "fid_judge2", "kid_judge2", "bits_per_dim"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in summary:
        lines.append("| " + " | ".join(fmt(r.get(c), r.get(f"{c}_std")) for c in columns) + " |")
    report = [
        "# Schedule comparison",
        f"{len(runs)} runs: " + ", ".join(f"`{run.name}`" for run in runs) + ".",
        f"Samples per point: n = {cfg.n}, sampling seed {cfg.seed}, labels cycling 0-9. FID and KID in the feature "
        f"space of the MNIST judge (`{Path(cfg.classifier).name}`"
        + (f"; `_judge2`: `{Path(cfg.classifier2).name}`" if cfg.get("classifier2") else "")
        + ") against the 10k test images; the floor is real-vs-real at the same n (training images, mean of "
        f"{cfg.floor_subsets} disjoint sets): " + ", ".join(f"n = {n}: FID {f:.3f}" for n, f in floors) + ". "
        "Values are mean ± standard deviation over the seeds of an arm (no ± for one seed). bits/dim: the variational "
        f"bound on {cfg.nll.n} test images ({cfg.nll.draws} Monte-Carlo draw(s) of t each).",
        *[f"![{name}]({name})" for name in figures],
        "## Mean and spread over seeds",
        "\n".join(lines),
        "Every single measurement: `results.csv`; the table above: `summary.csv`.",
    ]
    (out / "report.md").write_text("\n\n".join(report) + "\n")


def main() -> None:
    run_app("compare", compare)


if __name__ == "__main__":
    main()
