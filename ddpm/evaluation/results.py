"""The report's tables: one row per (run, checkpoint, sampler, steps, guidance, guidance interval), the mean and spread
over the seeds of an arm, and results.csv files that several reports merge into. Every row states the network
evaluations per image (nfe) and the minutes the checkpoint had trained (train_minutes). Rows written before
guidance_interval, nfe and train_minutes existed read as every step and unknown."""

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from ddpm.files import written

RESULT_COLUMNS = ["run", "schedule", "loss", "T", "seed", "train_step", "train_minutes", "sampler", "steps", "guidance",
                  "guidance_interval", "nfe", "n", "fid",
                  "fid_floor", "kid", "kid_std", "class_accuracy", "bits_per_dim", "bits_per_dim_stderr",
                  "fid_judge2", "fid_floor_judge2", "kid_judge2", "kid_std_judge2", "kid_floor", "kid_floor_judge2",
                  "confidence", "class_entropy", "images_per_second", "budget"]
SUMMARY_METRICS = ["fid", "kid", "class_accuracy", "fid_judge2", "kid_judge2", "bits_per_dim"]
CELL = ["arm", "train_step", "sampler", "steps", "guidance", "guidance_interval", "n"]
SUMMARY_COLUMNS = CELL + ["nfe", "seeds", "fid_floor", "fid_floor_judge2"] + [
    f"{m}{s}" for m in SUMMARY_METRICS for s in ("", "_std")]
# What makes a results.csv row the same measurement as another.
MEASUREMENT = ["run", "train_step", "sampler", "steps", "guidance", "guidance_interval", "n"]


def cell_value(row: dict, column: str) -> str:
    """A key column as text; a column the row lacks (an older results.csv) or None reads as empty."""
    value = row.get(column)
    return "" if value is None else str(value)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over the seeds of each arm, per checkpoint step, sampler, steps, guidance and
    guidance interval."""
    cells = defaultdict(list)
    for r in rows:
        cells[tuple(cell_value(r, c) if c == "guidance_interval" else r[c] for c in CELL)].append(r)
    summary = []
    for cell, members in sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0]))):
        first = members[0]
        entry = dict(zip(CELL, cell), nfe=first.get("nfe"), seeds=len(members), fid_floor=first.get("fid_floor"),
                     fid_floor_judge2=first.get("fid_floor_judge2"))
        for metric in SUMMARY_METRICS:
            values = [m[metric] for m in members if m.get(metric) is not None]
            if values:
                entry[metric] = statistics.mean(values)
                entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(entry)
    return summary


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with written(path, text=True) as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def merge_results(path: Path, rows: list[dict], columns: list[str] = RESULT_COLUMNS,
                  measurement: list[str] = MEASUREMENT) -> None:
    """Add rows to a results.csv (or another table of `columns`) that other reports wrote too, replacing the ones
    measured again: those equal in the `measurement` columns."""
    def key(r):
        return tuple(cell_value(r, c) for c in measurement)

    existing = list(csv.DictReader(open(path))) if path.exists() else []
    new = {key(r) for r in rows}
    merged = [r for r in existing if key(r) not in new] + rows
    write_csv(path, sorted(merged, key=key), columns)
