"""Hydra builds a sweeper only from a class that it found under the hydra_plugins package: the project's Optuna
sweeper (ddpm/cli/optuna_sweeper.py), named here for `hydra.sweeper._target_` (conf/hydra/sweeper/optuna.yaml)."""

from ddpm.cli.optuna_sweeper import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    pass
