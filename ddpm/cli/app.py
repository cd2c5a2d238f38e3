"""The entry points. Every command is a Hydra app over one config in conf/ (`python train.py`, `python sample.py`,
`ddpm-evaluate`, `ddpm-compare`, `ddpm-nll`, `ddpm-bench`, `ddpm-judge`), run by `run_app`, which checks
the command line before Hydra composes it, expands `resume=<run folder>`, and turns bad input into one line.
A run's config is recorded only once the run has passed its checks.

Hydra creates the run folder before the task starts. It is told (conf/hydra/default.yaml) not to write `.hydra/`
and to open the log file only when something is logged, so that a call refused by its checks leaves an empty
folder, which `exit_on_user_error` removes: nothing written, nothing overwritten.
"""

import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.runtime import CONF, check_writable, exit_on_user_error, installed, lightning_messages_to_stdout
from ddpm.errors import ConfigError
from hydra_plugins.ddpm_optuna_sweeper import OptunaSweeper


def _overrides(args: list[str]):
    """The key=value arguments, parsed as Hydra parses them (flags such as -m are not overrides)."""
    try:
        return OverridesParser.create().parse_overrides([a for a in args if "=" in a and not a.startswith("-")])
    except OverrideParseException:
        return []  # Hydra reports a malformed override itself


# Hydra's own options beside those of conf/hydra/<group>/.
HYDRA_BUILTIN = {"hydra/launcher": ["basic"], "hydra/sweeper": ["basic"]}
# Options that need a package (a Hydra plugin, or Optuna for the project's sweeper): its module and the pyproject
# extra that installs it.
PLUGINS = {
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "hparams_search=optuna": ("optuna", "optuna"),
    "hydra/sweeper=optuna": ("optuna", "optuna"),
}


def check_group_choices(args: list[str], conf_dir: Path = CONF) -> None:
    """`schedule=foo` names a yaml of conf/schedule/; Hydra's own error for a wrong one spans a dozen lines."""
    for override in _overrides(args):
        group = conf_dir / override.key_or_group
        if override.is_delete() or not group.is_dir():
            continue
        valid = sorted([p.stem for p in group.glob("*.yaml")] + HYDRA_BUILTIN.get(override.key_or_group, []))
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is not None and str(value) not in valid:
                raise ConfigError(f"{override.key_or_group}={value} is unknown: use one of {', '.join(valid)}")
            module, extra = PLUGINS.get(f"{override.key_or_group}={value}", (None, None))
            if module and not installed(module):
                needed = "a Hydra plugin" if module.startswith("hydra_plugins.") else module
                raise ConfigError(f"{override.key_or_group}={value} needs {needed}: pip install -e '.[{extra}]'")


def resume_args(args: list[str]) -> list[str]:
    """`resume=RUN` continues the run in folder RUN: its saved overrides come first (the ones given now win) and
    Hydra writes into RUN itself, so checkpoints, TensorBoard events and log continue where they were."""
    overrides = _overrides(args)
    given = {o.key_or_group: o for o in overrides}
    if "resume" not in given or given["resume"].value() is None:
        return args
    if "-m" in args or "--multirun" in args:
        raise ConfigError("resume= continues one run: drop -m (--multirun)")
    run = Path(str(given["resume"].value())).expanduser().resolve()
    saved = run / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={run} is not a train.py run folder (no .hydra/overrides.yaml): "
                          "pass the folder that holds checkpoints/")
    previous = [o.input_line for o in _overrides(list(OmegaConf.load(saved))) if o.key_or_group not in given]
    run_dir = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run}"]
    return [args[0], *previous, *args[1:], *run_dir]


MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Hydra's argparse reads the overrides as one positional list, which a flag between them cuts short
    ("unrecognized arguments"); people type `-m` wherever they think of it, so it goes first."""
    flags = [a for a in argv[1:] if a in MULTIRUN_FLAGS]
    return [argv[0], *flags, *(a for a in argv[1:] if a not in MULTIRUN_FLAGS)]


def prepare_argv(argv: list[str]) -> list[str]:
    argv = multirun_flag_first(argv)
    check_group_choices(argv[1:])
    return resume_args(argv)


class CheckOutputFolder(Callback):
    """A Hydra callback: Hydra creates the run (or sweep) folder before the task starts, and one it cannot create
    ends in Hydra's traceback, so the folder is checked here, before that."""

    @exit_on_user_error
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        # The default run folder's name holds ${hydra:runtime.choices...}, which resolves only once HydraConfig is
        # set; Hydra sets it after this callback, and without it the check was skipped with a warning on stderr.
        HydraConfig.instance().set_config(config)
        check_writable(config.hydra.run.dir)

    @exit_on_user_error
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_writable(config.hydra.sweep.dir)


def run_app(config_name: str, task: Callable[[DictConfig], Any]) -> None:
    """Check the command line, then let Hydra compose conf/<config_name>.yaml over it and run `task` on the
    result. Bad input (a DDPMError) ends as one `error:` line and exit status 2."""
    import ddpm.cli.resolvers  # noqa: F401  (the configs use its resolvers)

    # Hydra finds plugins by listing the folders of the hydra_plugins package, which misses the one of an editable
    # install (a setuptools import hook): the project's sweeper is registered by name.
    Plugins.instance().register(OptunaSweeper)

    sys.argv = exit_on_user_error(prepare_argv)(sys.argv)
    lightning_messages_to_stdout()
    # conf/hydra/launcher/ sets the launcher plugins' options under their own names; Hydra 1.3 merges such a file
    # with the plugin's schema and warns that it will stop doing so, which is harmless: the files are complete.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
    hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)(exit_on_user_error(task))()
