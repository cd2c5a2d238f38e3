"""The report's tables: one row per (run, checkpoint, sampler, steps, guidance), the mean and spread over the seeds
of an arm, and results.csv files that several reports merge into."""

import csv
import statistics
from collections import defaultdict
from pathlib import Path

RESULT_COLUMNS = ["run", "schedule", "loss", "T", "seed", "train_step", "sampler", "steps", "guidance", "n", "fid",
                  "fid_floor", "kid", "kid_std", "class_accuracy", "bits_per_dim", "bits_per_dim_stderr",
                  "fid_judge2", "fid_floor_judge2", "kid_judge2", "kid_std_judge2", "kid_floor", "kid_floor_judge2",
                  "confidence", "class_entropy", "images_per_second", "budget"]
SUMMARY_METRICS = ["fid", "kid", "class_accuracy", "fid_judge2", "kid_judge2", "bits_per_dim"]
CELL = ["arm", "train_step", "sampler", "steps", "guidance", "n"]
SUMMARY_COLUMNS = CELL + ["seeds", "fid_floor", "fid_floor_judge2"] + [
    f"{m}{s}" for m in SUMMARY_METRICS for s in ("", "_std")]
# What makes a results.csv row the same measurement as another.
MEASUREMENT = ["run", "train_step", "sampler", "steps", "guidance", "n"]


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over the seeds of each arm, per checkpoint step, sampler, steps and guidance."""
    cells = defaultdict(list)
    for r in rows:
        cells[tuple(r[c] for c in CELL)].append(r)
    summary = []
    for cell, members in sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0]))):
        entry = dict(zip(CELL, cell), seeds=len(members), fid_floor=members[0].get("fid_floor"),
                     fid_floor_judge2=members[0].get("fid_floor_judge2"))
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
    def key(r):
        return tuple(str(r[c]) for c in MEASUREMENT)

    existing = list(csv.DictReader(open(path))) if path.exists() else []
    new = {key(r) for r in rows}
    merged = [r for r in existing if key(r) not in new] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, sorted(merged, key=key), RESULT_COLUMNS)
