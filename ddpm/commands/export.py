"""Export a checkpoint as one safetensors file (ddpm.training.exported): its weights, model config and sampling
setting, with no pickle, for sample, evaluate and nll to read as `ckpt=FILE`, in any folder.

    ddpm-export ckpt=outputs/train/runs/<run>/checkpoints/last.ckpt out=model.safetensors
"""

import logging
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ddpm.cli.app import run_app
from ddpm.cli.runtime import check_writable
from ddpm.errors import ConfigError
from ddpm.files import write_bytes
from ddpm.training.checkpoint import load_checkpoint
from ddpm.training.exported import SUFFIX, exported_bytes, read_exported
from ddpm.validation import boolean

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> Path:
    out = Path(str(cfg.out)).expanduser()
    if out.suffix != SUFFIX:
        raise ConfigError(f"out={cfg.out}: name the file *{SUFFIX}, the suffix by which the commands know an "
                          f"exported model")
    ema, overwrite = boolean("ema", cfg.ema), boolean("overwrite", cfg.overwrite)
    if out.exists() and not overwrite:
        raise ConfigError(f"out={cfg.out} exists: choose another file, or pass overwrite=true to replace it")
    check_writable(out.parent)
    checkpoint = load_checkpoint(cfg.ckpt)
    source = str(cfg.ckpt)  # as given: a shipped file names its run folder without the machine's own path
    # Text, or a mapping such as results_row={run:...,train_step:...}, whose commas Hydra would otherwise split.
    row = OmegaConf.to_container(cfg.results_row) if OmegaConf.is_config(cfg.results_row) else cfg.results_row
    write_bytes(out, exported_bytes(checkpoint, source, ema=ema, results_row=row))
    provenance = read_exported(out)["provenance"]  # what a reader will find: the file is read back once
    log.info(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {provenance['weights']} weights of {source} at "
             f"step {provenance['global_step']}")
    return out


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "export", export)


if __name__ == "__main__":
    main()
