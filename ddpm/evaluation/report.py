"""The compare report's figures and its report.md: plots of the summary, the validation error by log-SNR, bits/dim,
loss curves, the schedules, and the sample grids of each arm's first seed (sampled by ddpm.evaluation.study)."""

import statistics
from collections import defaultdict
from pathlib import Path

from ddpm.evaluation import plots
from ddpm.evaluation.runs import Run, read_scalars
from ddpm.files import write_text


def draw_figures(cfg, runs: list[Run], representatives: dict[str, Run], summary: list[dict], out: Path,
                 pictures: dict, schedules: list, settings: dict) -> list[str]:
    """Writes the figures into `out` and returns the names of those drawn. `pictures`: each arm's sample grid,
    drawn in its setting of `settings` (ddpm.evaluation.study.GridSetting); `schedules`: the arms' noise
    schedules."""
    figures = []
    colours = plots.arm_colours(sorted({run.arm for run in runs}))  # one colour per arm in every figure
    last_step = {arm: max(r["train_step"] for r in summary if r["arm"] == arm) for arm in {r["arm"] for r in summary}}
    final = [r for r in summary if r["train_step"] == last_step[r["arm"]]]
    at_w = [r for r in final if r["guidance"] == cfg.main_guidance]
    floors = {r["sampler"]: r["fid_floor"] for r in at_w}
    for metric in ("fid", "kid", "fid_judge2"):
        name = f"{metric}_vs_steps.png"
        if plots.metric_curves(at_w, metric, "steps", "sampler", out / name, floors if metric == "fid" else None,
                               title=f"last checkpoint, w={cfg.main_guidance:g}, n={cfg.n}: ", colours=colours):
            figures.append(name)
    # Training length and guidance are read at one sampler, DDIM at ddim_steps (50 by default).
    ddim = [r for r in summary if r["sampler"] == "ddim" and r["steps"] == cfg.ddim_steps]
    label = f"DDIM-{cfg.ddim_steps}, n={cfg.n}: "
    drawn = {
        "fid_vs_train_steps.png": plots.metric_curves(
            ddim, "fid", "train_step", "guidance", out / "fid_vs_train_steps.png",
            {r["guidance"]: r["fid_floor"] for r in ddim}, xscale="linear", title=label, yscale="log",
            colours=colours),
        "kid_vs_train_steps.png": plots.metric_curves(
            ddim, "kid", "train_step", "guidance", out / "kid_vs_train_steps.png", xscale="linear", title=label,
            yscale="log", colours=colours),
        "guidance_tradeoff.png": plots.tradeoff(
            [r for r in final if r in ddim], "class_accuracy", "fid", out / "guidance_tradeoff.png",
            f"{label}over guidance w, last checkpoint", floor=next((r["fid_floor"] for r in ddim), None),
            colours=colours),
    }
    figures += [name for name, written in drawn.items() if written]

    curves = defaultdict(lambda: defaultdict(list))
    scalars = {run.name: read_scalars(run.path) for run in runs}
    for run in runs:
        for tag, values in scalars[run.name].items():
            if tag.startswith("val_at_logsnr/"):
                curves[run.arm][float(tag.split("/")[1])].append(values[-1][1])
    if curves:
        plots.val_by_log_snr({arm: [(x, statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                                    for x, v in per.items()] for arm, per in curves.items()},
                             out / "val_by_log_snr.png", colours)
        figures.append("val_by_log_snr.png")
    bpd = {r["arm"]: (r["bits_per_dim"], r.get("bits_per_dim_std") or 0.0) for r in final
           if r.get("bits_per_dim") is not None}
    if bpd:
        plots.bars(bpd, "bits/dim (lower is better)", f"variational bound, last checkpoint, {cfg.nll.n} test images",
                   out / "bits_per_dim.png", colours)
        figures.append("bits_per_dim.png")
    labels = {arm: f"{arm} (seed {run.seed})" for arm, run in representatives.items()}
    plots.loss_curves({labels[arm]: scalars[run.name] for arm, run in representatives.items()},
                      out / "loss_curves.png", {labels[arm]: colours[arm] for arm in representatives})
    plots.schedules(schedules, out / "schedules.png")
    captions = {arm: str(setting) for arm, setting in settings.items()}
    if len(set(captions.values())) == 1:
        named, title = {labels[arm]: picture for arm, picture in pictures.items()}, next(iter(captions.values()))
    else:  # each grid its own setting, under its name
        named = {f"{labels[arm]}\n{captions[arm]}": picture for arm, picture in pictures.items()}
        title = "each arm in its own sampling setting (under its name)"
    plots.pictures(named, f"{title}, the same noise: row k = digit k", out / "grids.png")
    return figures + ["loss_curves.png", "schedules.png", "grids.png"]


def fmt(value, std=None) -> str:
    if value is None or value == "":
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} ± {std:.2g}" if std is not None else text


def write_report(cfg, runs: list[Run], summary: list[dict], figures: list[str], out: Path,
                 representatives: dict[str, Run], settings: dict) -> None:
    """report.md; `settings`: each arm's grid setting (ddpm.evaluation.study.GridSetting), with where each value came
    from."""
    floors = sorted({(r["n"], r["fid_floor"]) for r in summary if r.get("fid_floor") is not None})
    columns = ["arm", "train_step", "sampler", "steps", "guidance", "guidance_interval", "nfe", "seeds", "fid",
               "fid_floor", "kid", "class_accuracy", "fid_judge2", "kid_judge2", "bits_per_dim"]
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
        "Each arm's sample grid (`grids.png`: its first seed's last checkpoint, the same noise for every arm) is "
        "drawn, per key, with the command line's `grid.<key>` where given, else the setting stored with the checkpoint "
        "(its run's tuned `sampling.yaml` first), else `conf/sampling/default.yaml`:\n\n"
        + "\n".join(f"- {arm} (seed {representatives[arm].seed}), {settings[arm].sources}" for arm in sorted(settings)),
        "## Mean and spread over seeds",
        "\n".join(lines),
        "Every single measurement: `results.csv`; the table above: `summary.csv`.",
    ]
    write_text(out / "report.md", "\n\n".join(report) + "\n")
