"""Rows of ddpm-compare reports scored with other sampling seeds, into docs/compare/sampling_seeds.csv:

    ddpm-compare runs=[RUN] 'points=[...]' nll.n=0 seed=S hydra.run.dir=REPORT_S     # one report per sampling seed
    python scripts/seed_rows.py S=REPORT_S [S=REPORT_S ...]

results.csv's `seed` is the training seed and one row per measurement, so the same point at several sampling seeds
lives here, a row per seed (`sampling_seed`); a row measured again replaces the old one. What the pages quote over
sampling seeds (scripts/docs_numbers.py) is read from this file.
"""

import csv
import sys
from pathlib import Path

from ddpm.evaluation.results import merge_results

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "docs" / "compare" / "sampling_seeds.csv"
COLUMNS = ["run", "schedule", "train_step", "sampler", "steps", "guidance", "guidance_interval", "nfe", "n",
           "sampling_seed", "fid", "fid_floor", "fid_judge2", "fid_floor_judge2", "kid", "class_accuracy"]
KEY = ["run", "train_step", "sampler", "steps", "guidance", "guidance_interval", "n", "sampling_seed"]


def report_rows(seed: int, report: Path) -> list[dict]:
    rows = list(csv.DictReader(open(report / "results.csv")))
    if not rows:
        raise SystemExit(f"error: {report / 'results.csv'} has no rows")
    return [{**{c: r.get(c, "") for c in COLUMNS}, "sampling_seed": str(seed)} for r in rows]


def main(args: list[str]) -> None:
    if not args or any("=" not in a or not a.split("=", 1)[0].isdigit() for a in args):
        raise SystemExit("usage: python scripts/seed_rows.py SEED=REPORT_DIR [SEED=REPORT_DIR ...] "
                         "(SEED: the report's seed=, a whole number)")
    new = [row for a in args for row in report_rows(int(a.split("=", 1)[0]), Path(a.split("=", 1)[1]))]
    merge_results(SEEDS, new, COLUMNS, KEY)
    print(f"{len(new)} rows into {SEEDS}")


if __name__ == "__main__":
    main(sys.argv[1:])
