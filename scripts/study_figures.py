"""The figures and tables of the schedule study (docs/compare/README.md), drawn from docs/compare/results.csv alone:

    python scripts/study_figures.py       # writes docs/compare/*.png and docs/compare/tables.md

results.csv is what `ddpm-compare ... results=docs/compare/results.csv` merged into it; the sample grids, loss
curves and validation errors by log-SNR are in docs/compare/study/ and docs/compare/default/ (they need the runs).
Every figure draws an arm in the same colour (one mapping over all arms of results.csv).
"""

import csv
from pathlib import Path

from ddpm.evaluation import plots
from ddpm.evaluation.report import fmt
from ddpm.evaluation.results import summarise

HERE = Path(__file__).resolve().parents[1] / "docs" / "compare"
INTS = {"T", "seed", "train_step", "steps", "n", "budget"}
RECIPES = {1100: "quickstart", 10000: "default"}  # the training budgets of experiment=quickstart and of train.yaml


def load() -> list[dict]:
    rows = []
    for raw in csv.DictReader(open(HERE / "results.csv")):
        row = {}
        for key, value in raw.items():
            if value in ("", None):
                row[key] = None
            elif key in INTS:
                row[key] = int(float(value))
            else:
                try:
                    row[key] = float(value)
                except ValueError:
                    row[key] = value
        row["arm"] = f"{row['schedule']}, {row['loss']}" + (f", T={row['T']}" if row["T"] != 1000 else "")
        rows.append(row)
    return rows


def cell(summary, arm, train_step, sampler, steps, guidance, metric="fid"):
    for r in summary:
        if (r["arm"], r["train_step"], r["sampler"], r["steps"], r["guidance"]) == (arm, train_step, sampler, steps,
                                                                                      guidance):
            value, std = r.get(metric), r.get(f"{metric}_std")
            if value is None:
                return ""
            digits = 3 if metric in ("class_accuracy", "bits_per_dim") else 1
            spread = f" ± {std:.{digits}f}" if std is not None else ""
            return f"{value:.{digits}f}{spread}" + (f" ({r['seeds']})" if metric == "fid" else "")
    return ""


def table(summary, arms, train_step, points, metric="fid") -> str:
    header = "| arm | " + " | ".join(f"{s}-{n} w={w:g}" for s, n, w in points) + " |"
    lines = [header, "|" + "---|" * (len(points) + 1)]
    for arm in arms:
        cells = [cell(summary, arm, train_step, s, n, w, metric) for s, n, w in points]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sampling_study(rows: list[dict]) -> str:
    """The sampling study's rows (those with an NFE, scored with this round's judges): a figure of FID against
    class accuracy per sampler with one panel per recipe (arm and training budget), and per recipe a table of mean
    ± std over seeds."""
    recipes = {}
    for r in sorted(rows, key=lambda r: (r["budget"], r["arm"])):
        recipes.setdefault((r["arm"], r["budget"]), []).append(r)
    titles = {key: f"{RECIPES.get(key[1], 'recipe')}: {key[0]}, {key[1]} steps, "
                   f"{len({r['seed'] for r in members})} seed(s), n={members[0]['n']}"
              for key, members in recipes.items()}
    summaries = {key: summarise(members) for key, members in recipes.items()}
    plots.sampler_tradeoff({titles[key]: summary for key, summary in summaries.items()},
                           HERE / "sampling_tradeoff.png")
    sections = []
    for key, summary in summaries.items():
        first = recipes[key][0]
        lines = ["| sampler | steps | w | interval | NFE | seeds | FID | FID, judge 2 | KID | class accuracy |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(summary, key=lambda r: r["fid"]):
            interval = r.get("guidance_interval") or "every step"
            cells = [r["sampler"], r["steps"], f"{r['guidance']:g}", interval, f"{r['nfe']:g}", r["seeds"]] + [
                fmt(r[m], r.get(f"{m}_std")) for m in ("fid", "fid_judge2", "kid", "class_accuracy")]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        sections.append(f"### {titles[key]}\n\nReal-vs-real floor at that n: FID {first['fid_floor']:.2f} "
                        f"(judge 2: {first['fid_floor_judge2']:.2f}). Sorted by FID.\n\n" + "\n".join(lines))
    return ("## Sampling settings\n\nThe judges were retrained this round, so compare these rows only with each "
            "other, not with the tables above.\n\n" + "\n\n".join(sections))


def main() -> None:
    everything = load()
    # The sampling study's rows carry an NFE; the schedule study's were scored before NFE was recorded, with the
    # earlier judges.
    sampling = [r for r in everything if r.get("nfe") is not None]
    rows = [r for r in everything if r.get("nfe") is None]
    budgets = sorted({r["budget"] for r in rows})
    colours = plots.arm_colours(r["arm"] for r in rows)
    sections = [f"# Tables from results.csv ({len(rows)} rows)\n\n"
                "FID ± standard deviation over seeds (number of seeds); "
                f"n = {rows[0]['n']} samples per point; real-vs-real floor at that n: FID {rows[0]['fid_floor']:.2f} "
                f"(judge 2: {rows[0]['fid_floor_judge2']:.2f}).\n\nWritten by `python scripts/study_figures.py`."]
    for budget in budgets:
        part = summarise([r for r in rows if r["budget"] == budget])
        arms = sorted({r["arm"] for r in part})
        final = [r for r in part if r["train_step"] == budget]
        tag = f"b{budget}"
        points = sorted({(r["sampler"], r["steps"], r["guidance"]) for r in final}, key=lambda p: (p[2], p[0], p[1]))
        sections.append(f"## {budget} training steps\n\n### FID (judge 1)\n\n" + table(final, arms, budget, points))
        for metric, name in (("fid_judge2", "FID (judge 2)"), ("kid", "KID (judge 1)"),
                             ("class_accuracy", "class accuracy")):
            sections.append(f"### {name}\n\n" + table(final, arms, budget, points, metric))
        milestones = sorted({r["train_step"] for r in part})
        ddim50 = [r for r in part if r["sampler"] == "ddim" and r["steps"] == 50]
        lines = []
        for w in sorted({r["guidance"] for r in ddim50}):
            for arm in arms:
                values = [f"{step}: {cell(ddim50, arm, step, 'ddim', 50, w)}" for step in milestones
                          if cell(ddim50, arm, step, "ddim", 50, w)]
                lines.append(f"- w = {w:g}, {arm}: " + "; ".join(values))
        sections.append("### DDIM-50 FID against training steps\n\n" + "\n".join(lines))
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
    if sampling:
        sections.append(sampling_study(sampling))
    (HERE / "tables.md").write_text("\n\n".join(sections) + "\n")
    print(f"wrote {HERE / 'tables.md'} and the figures")


if __name__ == "__main__":
    main()
