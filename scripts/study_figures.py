"""The figures of the schedule study (docs/compare/README.md), drawn from docs/compare/results.csv alone:

    python scripts/study_figures.py       # writes docs/compare/*.png, then what scripts/docs_numbers.py writes

results.csv is what `ddpm-compare ... results=docs/compare/results.csv` merged into it; the sample grids, loss
curves and validation errors by log-SNR are in docs/compare/study/ and docs/compare/default/ (they need the runs).
Every figure draws an arm in the same colour (one mapping over all arms of results.csv). The tables (tables.md)
and the numbers of README.md and docs/ are docs_numbers.py's: text only, so that a test can check them.
"""

from pathlib import Path

import docs_numbers

from ddpm.evaluation import plots
from ddpm.evaluation.results import summarise

HERE = Path(__file__).resolve().parents[1] / "docs" / "compare"


def sampling_figure(rows: list[dict]) -> None:
    """The sampling study's rows: FID against class accuracy per sampler, one panel per recipe (arm and training
    budget)."""
    recipes = docs_numbers.sampling_recipes(rows)
    plots.sampler_tradeoff({title: summarise(members) for title, members in recipes.items()},
                           HERE / "sampling_tradeoff.png")


def budget_figures(rows: list[dict], budget: int, colours: dict) -> None:
    part = summarise([r for r in rows if r["budget"] == budget])
    final = [r for r in part if r["train_step"] == budget]
    ddim50 = [r for r in part if r["sampler"] == "ddim" and r["steps"] == 50]
    tag = f"b{budget}"
    at2 = [r for r in final if r["guidance"] == 2.0]
    if at2:
        floor = {r["sampler"]: r["fid_floor"] for r in at2}
        for metric in ("fid", "kid", "fid_judge2"):
            plots.metric_curves(at2, metric, "steps", "sampler", HERE / f"{tag}_{metric}_vs_steps.png",
                                floor if metric == "fid" else None, title=f"{budget} training steps, w=2: ",
                                colours=colours)
    plots.metric_curves(ddim50, "fid", "train_step", "guidance", HERE / f"{tag}_fid_vs_train_steps.png",
                        {r["guidance"]: r["fid_floor"] for r in ddim50}, xscale="linear", yscale="log",
                        title=f"DDIM-50 ({budget}-step runs): ", colours=colours)
    plots.tradeoff([r for r in final if r["sampler"] == "ddim" and r["steps"] == 50], "class_accuracy", "fid",
                   HERE / f"{tag}_guidance_tradeoff.png",
                   f"DDIM-50 over guidance w, after {budget} steps, n={rows[0]['n']}", floor=rows[0]["fid_floor"],
                   colours=colours)
    # One bar per scored checkpoint (seed 0 of each arm), with the estimator's standard error.
    scored = [r for r in rows if r["budget"] == budget and r["train_step"] == budget
              and r.get("bits_per_dim") is not None
              and (r["sampler"], r["steps"], r["guidance"]) == ("ddim", 50, 2.0)]
    bpd = {f"{r['arm']}, seed {r['seed']}": (r["bits_per_dim"], r["bits_per_dim_stderr"] or 0.0) for r in scored}
    if bpd:
        plots.bars(bpd, "bits/dim (lower is better)", f"variational bound after {budget} steps (± standard error)",
                   HERE / f"{tag}_bits_per_dim.png", {name: colours[name.rsplit(", seed", 1)[0]] for name in bpd})


def time_figure(rows: list[dict], seeds: list[dict]) -> None:
    """FID against training minutes: each quickstart's checkpoints at its own sampling setting and at the 2026-11
    default, and the default recipe (docs/tuning.md, "A recipe for minutes")."""
    lines = {name: docs_numbers.pick(rows, **where) for name, where in docs_numbers.TIME_LINES.items()}
    lines["default recipe, 2026-11 default (10,000 steps: 10x the minutes of 1,000)"] = \
        docs_numbers.default_recipe_line(rows, seeds)
    plots.time_to_quality(lines, HERE / "fid_vs_minutes.png")


def main() -> None:
    rows, sampling = docs_numbers.split(docs_numbers.load())
    colours = plots.arm_colours(r["arm"] for r in rows)
    for budget in sorted({r["budget"] for r in rows}):
        budget_figures(rows, budget, colours)
    studied = [r for r in sampling if not docs_numbers.RECIPE_RUNS.fullmatch(r["run"])]  # recipes: tuning.md
    if studied:
        sampling_figure(studied)
    time_figure(sampling, docs_numbers.load(docs_numbers.COMPARE / "sampling_seeds.csv"))
    print(f"wrote the figures in {HERE}")
    docs_numbers.main([])


if __name__ == "__main__":
    main()
