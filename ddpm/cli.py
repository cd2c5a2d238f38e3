"""Every command is a Hydra app over one config in conf/: `python train.py`, `python sample.py`,
`python -m ddpm.evaluate`, `python -m ddpm.compare`, `python -m ddpm.bench`, `python -m ddpm.metrics.classifier`."""

import os
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]


def run_app(config_name: str, task: Callable[[DictConfig], Any]) -> None:
    """Parse the command line with Hydra over conf/<config_name>.yaml and run `task` on the composed config.
    Bad input (a DDPMError) ends as one `error:` line and exit status 2."""
    os.environ.setdefault("DDPM_PROJECT_ROOT", str(ROOT))  # paths.root_dir: outputs/ and data/ live here
    import ddpm.resolvers  # noqa: F401  (the configs use its resolvers)
    from ddpm.errors import exit_on_user_error

    hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name=config_name)(exit_on_user_error(task))()
