"""The compare report's figures. Each function takes plain rows or arrays and writes one PNG; no scoring here."""

from collections import defaultdict
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ddpm.files import written  # noqa: E402


def _save(fig, path: Path, rect=(0, 0, 1, 1)) -> None:
    fig.tight_layout(rect=rect)
    with written(path) as f:
        fig.savefig(f, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def arm_colours(arms) -> dict[str, tuple]:
    """One colour per arm, assigned in the arms' sorted order. Matplotlib's colour cycle restarts in every panel, so an
    arm missing from one panel would shift the others' colours there; every function below draws from one mapping
    (its caller's, or this one over its own arms), so that an arm keeps its colour across panels and figures."""
    names = sorted(set(arms))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, last = [], values[0] if values else 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        out.append(last)
    return out


def loss_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path, colours: dict | None = None) -> None:
    """curves: run -> tag -> [(step, value)], for train/loss and val/loss."""
    colours = colours or arm_colours(curves)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run, scalars in curves.items():
        for ax, tag, smoothing in ((axes[0], "train/loss", 0.95), (axes[1], "val/loss", 0.0)):
            if scalars.get(tag):
                steps, values = zip(*scalars[tag])
                ax.plot(steps, smooth(list(values), smoothing), label=run, color=colours[run], ms=3,
                        marker="o" if tag == "val/loss" else None)
    titles = ("train/loss (smoothed; weighted when min-SNR)", "val/loss (plain error, fixed t and noise)")
    for ax, title in zip(axes, titles):
        ax.set(title=title, xlabel="step", yscale="log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    _save(fig, path)


def schedules(schedule_list, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for schedule in schedule_list:
        u = (torch.arange(schedule.timesteps) + 1) / schedule.timesteps
        axes[0].plot(u, schedule.alphas_cumprod, label=repr(schedule))
        axes[1].plot(u, schedule.log_snr(), label=repr(schedule))
    axes[0].set(title="alpha_bar(t)", xlabel="t / T")
    axes[1].set(title="log SNR(t) = log(alpha_bar / (1 - alpha_bar))", xlabel="t / T")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, path)


def val_by_log_snr(curves: dict[str, list[tuple[float, float, float]]], path: Path,
                   colours: dict | None = None) -> None:
    """curves: arm -> [(log_snr, mean error, std over seeds)] from the last validation."""
    colours = colours or arm_colours(curves)
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, points in sorted(curves.items()):
        points = sorted(points)
        x, y, err = zip(*points)
        ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=arm, color=colours[arm])
    ax.set(title="validation error at fixed noise levels (last validation)", xlabel="log SNR (noise <- -> clean)",
           ylabel="eps MSE (plain)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    _save(fig, path)


def pictures(images: dict[str, torch.Tensor], title: str, path: Path) -> None:
    """Pictures (3 x H x W in [0, 1]) side by side, titled with their names."""
    fig, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 4.4), squeeze=False)
    for ax, (name, picture) in zip(axes[0], images.items()):
        ax.imshow(picture.permute(1, 2, 0).numpy())
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, path, rect=(0, 0, 1, 0.95))  # tight_layout would put two-line titles under the suptitle


def metric_curves(summary: list[dict], metric: str, x: str, panel: str, path: Path, floor: dict | None = None,
                  xscale: str = "log", title: str = "", yscale: str = "linear", colours: dict | None = None) -> bool:
    """Mean +- std over seeds of `metric` against `x`, one line per arm, one panel per value of `panel`;
    `floor` maps a panel value to a horizontal line (the real-vs-real floor at the same n). False when there is
    nothing to draw (no file written)."""
    panels = sorted({r[panel] for r in summary if r.get(metric) is not None}, key=str)
    if not panels:
        return False
    colours = colours or arm_colours(r["arm"] for r in summary)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, value in zip(axes[0], panels):
        lines = defaultdict(list)
        for r in summary:
            if r[panel] == value and r.get(metric) is not None:
                lines[r["arm"]].append((r[x], r[metric], r.get(f"{metric}_std") or 0.0))
        for arm, points in sorted(lines.items()):
            xs, ys, errs = zip(*sorted(points))
            ax.errorbar(xs, ys, yerr=errs, marker="o", ms=3, capsize=2, label=arm, color=colours[arm])
        if floor and floor.get(value) is not None:
            ax.axhline(floor[value], color="gray", ls="--", lw=1, label="real vs real, same n")
        ax.set(title=f"{title}{panel} = {value}", xlabel=x, ylabel=metric, xscale=xscale, yscale=yscale)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, path)
    return True


def tradeoff(summary: list[dict], x: str, y: str, path: Path, title: str, floor: float | None = None,
             colours: dict | None = None) -> bool:
    """One line per arm through its guidance scales, e.g. FID against class accuracy, with `floor` (the
    real-vs-real value at the same n) as a horizontal line; False (no file) when no arm has two or more scales."""
    lines = defaultdict(list)
    for r in summary:
        if r.get(x) is not None and r.get(y) is not None:
            lines[r["arm"]].append((r["guidance"], r[x], r[y]))
    if not any(len(points) > 1 for points in lines.values()):
        return False
    colours = colours or arm_colours(lines)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for arm, points in sorted(lines.items()):
        points.sort()
        ax.plot([p[1] for p in points], [p[2] for p in points], marker="o", ms=4, label=arm, color=colours[arm])
        for w, px, py in points:
            ax.annotate(f"w={w:g}", (px, py), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if floor is not None:
        ax.axhline(floor, color="gray", ls="--", lw=1, label="real vs real, same n")
    ax.set(title=title, xlabel=x, ylabel=y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    _save(fig, path)
    return True


def bars(values: dict[str, tuple[float, float]], ylabel: str, title: str, path: Path,
         colours: dict | None = None) -> None:
    """name -> (value, error) as a bar chart with error bars."""
    names = sorted(values)
    colours = colours or arm_colours(names)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names)), 4))
    ax.bar(range(len(names)), [values[n][0] for n in names], yerr=[values[n][1] for n in names], capsize=3,
           color=[colours[n] for n in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    low = min(values[n][0] - values[n][1] for n in names)
    ax.set(ylabel=ylabel, title=title, ylim=(max(0, low * 0.95), None))
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


FLOORS = {"fid": "fid_floor", "fid_judge2": "fid_floor_judge2"}  # a metric's real-vs-real value at the same n


def sampler_tradeoff(panels: dict[str, list[dict]], path: Path, metric: str = "fid") -> bool:
    """FID against class accuracy, one panel per recipe (its title -> its summary rows), one colour per sampler and
    step count (the same in every panel), each point labelled with its guidance, its interval and its NFE, and each
    panel's real-vs-real floor at the same n (`fid_floor` of its rows) as a horizontal line. False when nothing to
    draw."""
    panels = {title: [r for r in rows if r.get("class_accuracy") is not None and r.get(metric) is not None]
              for title, rows in panels.items()}
    panels = {title: rows for title, rows in panels.items() if rows}
    if not panels:
        return False

    def family(r):
        return f"{r['sampler']}-{r['steps']}"

    colours = arm_colours(family(r) for rows in panels.values() for r in rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), sharey=True, squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items()):
        for name in sorted({family(r) for r in rows}):
            mine = [r for r in rows if family(r) == name]
            ax.errorbar([r["class_accuracy"] for r in mine], [r[metric] for r in mine],
                        yerr=[r.get(f"{metric}_std") or 0 for r in mine], fmt="o", ms=4, capsize=2, label=name,
                        color=colours[name])
            for r in mine:
                interval = f" in {r['guidance_interval']}" if r.get("guidance_interval") else ""
                ax.annotate(f"w={r['guidance']:g}{interval}, {r['nfe']:g} NFE", (r["class_accuracy"], r[metric]),
                            fontsize=5, xytext=(3, 3), textcoords="offset points")
        floor = rows[0].get(FLOORS.get(metric, ""))
        if floor is not None:
            ax.axhline(floor, color="gray", ls="--", lw=1, label="real vs real, same n")
        ax.set(title=title, xlabel="class accuracy", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel(metric)
    _save(fig, path)
    return True


def time_to_quality(lines: dict[str, list[dict]], path: Path, colours: dict | None = None) -> bool:
    """FID against the minutes of training, one line per recipe through its checkpoints (rows with train_minutes),
    one panel per judge, each with its real-vs-real floor at the rows' n; False (no file) when no row has minutes."""
    lines = {name: sorted((r for r in rows if r.get("train_minutes") is not None), key=lambda r: r["train_minutes"])
             for name, rows in lines.items()}
    lines = {name: rows for name, rows in lines.items() if rows}
    if not lines:
        return False
    colours = colours or arm_colours(lines)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (metric, floor, judge) in zip(axes, [("fid", "fid_floor", "judge 1"),
                                                 ("fid_judge2", "fid_floor_judge2", "judge 2")]):
        for name, rows in sorted(lines.items()):
            ax.plot([r["train_minutes"] for r in rows], [r[metric] for r in rows], marker="o", ms=4,
                    label=name, color=colours[name])
        floors = {r[floor] for rows in lines.values() for r in rows if r.get(floor) is not None}
        for value in sorted(floors):
            ax.axhline(value, color="gray", ls="--", lw=1)
            ax.axhline(1.1 * value, color="gray", ls=":", lw=1)
        ax.set(title=f"FID ({judge}) against training time; floor dashed, 1.1x dotted", xlabel="training minutes",
               ylabel=f"FID, {judge}", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(fig, path)
    return True
