"""Scores already measured for a run, kept in its folder (scores.json), so that a report over more runs or more points
samples only what is new."""

import json
from pathlib import Path

from omegaconf import DictConfig

from ddpm.files import write_text


def version(file) -> str:
    """A file as its name and modification time: a retrained judge or checkpoint is a new key."""
    return f"{Path(file).name}@{Path(file).stat().st_mtime_ns}" if file and Path(file).exists() else "none"


class ScoreCache:
    """Keyed by everything that changes a score: the checkpoint and the judges (file and modification time), n, seed,
    batch size (the stochastic samplers' streams are per batch) and the point."""

    def __init__(self, run: Path, cfg: DictConfig):
        self.path = run / "scores.json"
        self.judges = f"{version(cfg.classifier)}+{version(cfg.get('classifier2'))}"
        self.settings = f"n{cfg.n}-seed{cfg.seed}-bs{cfg.batch_size}"
        self.entries = json.loads(self.path.read_text()) if self.path.exists() else {}

    def key(self, ckpt: Path, what: str) -> str:
        return f"{version(ckpt)}|{self.judges}|{self.settings}|{what}"

    def get(self, ckpt: Path, what: str) -> dict | None:
        return self.entries.get(self.key(ckpt, what))

    def put(self, ckpt: Path, what: str, value: dict) -> dict:
        self.entries[self.key(ckpt, what)] = value
        write_text(self.path, json.dumps(self.entries, indent=1))
        return value
