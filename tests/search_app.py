"""A Hydra app that the project's Optuna sweeper searches in tests/test_search.py: its objective, (x - 1)^2 + n,
takes no training, so that continuing, failing, killed and shared searches cost seconds. Its config (search.yaml,
written by the test) is given with --config-dir."""

import os
import signal
import time
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

from hydra_plugins.ddpm_optuna_sweeper import OptunaSweeper


def once(marker: str | None) -> bool:
    """True the first time it is asked about `marker` (a file), in any process."""
    if marker is None or Path(marker).exists():
        return False
    Path(marker).touch()
    return True


@hydra.main(version_base="1.3", config_path=None, config_name="search")
def main(cfg: DictConfig) -> float:
    if once(cfg.kill_once):
        os.kill(os.getpid(), signal.SIGKILL)  # the search's own process, as the basic launcher runs jobs in it
    if once(cfg.raise_once):
        raise ValueError("this trial fails")
    time.sleep(cfg.seconds)
    return (cfg.x - 1) ** 2 + cfg.n


if __name__ == "__main__":
    Plugins.instance().register(OptunaSweeper)  # as ddpm.cli.app.run_app does
    main()
