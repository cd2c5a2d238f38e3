"""The entry points. Every command is a Hydra app over one config in conf/ (`python train.py`, `python sample.py`,
`ddpm-evaluate`, `ddpm-compare`, `ddpm-nll`, `ddpm-bench`, `ddpm-judge`), run by `run_app`, which checks
the command line before Hydra composes it, expands `resume=<run folder>`, and turns bad input into one line.
A run's config is recorded only once the run has passed its checks.

Hydra creates the run folder before the task starts. It is told (conf/hydra/default.yaml) not to write `.hydra/`
and to open the log file only when something is logged, so that a call refused by its checks leaves an empty
folder, which `exit_on_user_error` removes: nothing written, nothing overwritten.
"""

import difflib
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.cli.runtime import (
    CONF,
    check_writable,
    exit_if_stopped,
    exit_on_user_error,
    installed,
    lightning_messages_to_stdout,
)
from ddpm.errors import ConfigError, hydra_value
from hydra_plugins.ddpm_optuna_sweeper import OptunaSweeper
from hydra_plugins.ddpm_ray_launcher import RayLauncher


def _overrides(args: list[str]):
    """The key=value arguments, parsed as Hydra parses them (flags such as -m are not overrides); one Hydra cannot
    read is refused in one line (Hydra's own message spans three, and points at the character it stopped at)."""
    parser, parsed = OverridesParser.create(), []
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        try:
            parsed += parser.parse_overrides([arg])
        except OverrideParseException:
            key, _, value = arg.partition("=")
            raise ConfigError(f"{arg} is not a key=value that Hydra can read: quote a value that holds spaces, "
                              f"non-ASCII letters or special characters, e.g. '{key}=\"{value}\"'") from None
    return parsed


# Hydra's own options beside those of conf/hydra/<group>/.
HYDRA_BUILTIN = {"hydra/launcher": ["basic"], "hydra/sweeper": ["basic"]}
# Options that need a package (a Hydra plugin, or Optuna for the project's sweeper): its module and the pyproject
# extra that installs it.
PLUGINS = {
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=ray": ("ray", "ray"),
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


def _is_group(override, conf_dir: Path) -> bool:
    return (conf_dir / override.key_or_group).is_dir() or override.key_or_group.startswith("hydra/")


def _composed(config_name: str, args: list[str], conf_dir: Path) -> list[DictConfig]:
    """The command's config with the group options of the command line, as Hydra composes it; for a sweep over a
    group, one config per option (the others at their first), since each option brings its own keys."""
    groups = [o for o in _overrides(args) if _is_group(o, conf_dir) and not o.key_or_group.startswith("hydra")]
    first = [o.input_line if not o.is_sweep_override() else f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
             for o in groups]
    variants = [first] + [first[:i] + [f"{o.get_key_element()}={value}"] + first[i + 1:]
                          for i, o in enumerate(groups) if o.is_sweep_override()
                          for value in list(o.sweep_string_iterator())[1:]]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return [compose(config_name, overrides=v) for v in variants]


def _unknown_part(cfg: DictConfig, parts: list[str]) -> tuple[int, DictConfig | None] | None:
    """Where the key `parts` leaves the config: the index of its first unknown part and the node it is missing from
    (None when a plain value was asked for a key inside it); None when the key exists."""
    node = cfg
    for i, part in enumerate(parts):
        if isinstance(node, ListConfig):
            return None  # an item of a list: Hydra checks the index itself
        if not isinstance(node, DictConfig):
            return i, None
        if part not in node.keys():
            return i, node
        try:
            node = node[part] if i + 1 < len(parts) else None
        except OmegaConfBaseException:  # a value that resolves only inside Hydra's run (${hydra:...})
            return None
    return None


def _corrections(node, parts: list[str]) -> list[str]:
    """Keys of `node` within a typo of each part of `parts` (difflib's ratio >= 0.6)."""
    if not parts:
        return [""]
    if not isinstance(node, DictConfig):
        return []
    keys = [str(k) for k in node.keys()]
    head = [parts[0]] if parts[0] in keys else difflib.get_close_matches(parts[0], keys, n=3)
    found = []
    for key in head:
        try:
            child = node[key] if len(parts) > 1 else None
        except OmegaConfBaseException:
            continue
        found += [f"{key}.{rest}" if rest else key for rest in _corrections(child, parts[1:])]
    return found


def check_keys(config_name: str, args: list[str], conf_dir: Path = CONF) -> None:
    """`key=value` must name a setting of the command's config (`+key=value` adds a new one). Hydra's own answer to a
    typo is six lines that advise `+key=...`, which adds the typo; this one names the closest settings."""
    keys = [o for o in _overrides(args) if not (_is_group(o, conf_dir) or o.is_add() or o.is_force_add() or
                                                o.is_delete() or o.key_or_group.split(".")[0] == "hydra")]
    if not keys:
        return
    try:
        configs = _composed(config_name, args, conf_dir)
    except HydraException:
        return  # Hydra refuses the composition itself when it runs
    for override in keys:
        parts = override.key_or_group.split(".")
        unknown = [_unknown_part(cfg, parts) for cfg in configs]
        if None in unknown:
            continue
        index, parent = unknown[0]
        close = _corrections(configs[0], parts)
        key = override.key_or_group
        if close:
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
        elif parent is None:
            hint = f"{'.'.join(parts[:index])} is a value, not a group of settings"
        else:
            where = f"{'.'.join(parts[:index])} has" if index else "its settings are"
            hint = f"{where} {', '.join(str(k) for k in parent.keys())} (+{key}=... adds a new one)"
        raise ConfigError(f"{config_name} has no setting '{key}'; {hint}")


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
    run_dir = [] if "hydra.run.dir" in given else [f"hydra.run.dir={hydra_value(run)}"]
    return [args[0], *previous, *args[1:], *run_dir]


MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Hydra's argparse reads the overrides as one positional list, which a flag between them cuts short
    ("unrecognized arguments"); people type `-m` wherever they think of it, so it goes first."""
    flags = [a for a in argv[1:] if a in MULTIRUN_FLAGS]
    return [argv[0], *flags, *(a for a in argv[1:] if a not in MULTIRUN_FLAGS)]


def prepare_argv(argv: list[str], config_name: str = "train") -> list[str]:
    argv = multirun_flag_first(argv)
    check_group_choices(argv[1:])
    argv = resume_args(argv)
    check_keys(config_name, argv[1:])
    return argv


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


class ExitWhenStopped(Callback):
    """A Hydra callback: a job that a signal stopped has been recorded as failed (an Optuna search tells its trial
    so); the process then exits with 128 + the signal number, before a -m sweep starts its next job."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        exit_if_stopped()


def run_app(config_name: str, task: Callable[[DictConfig], Any]) -> None:
    """Check the command line, then let Hydra compose conf/<config_name>.yaml over it and run `task` on the
    result. Bad input (a DDPMError) ends as one `error:` line and exit status 2."""
    import ddpm.cli.resolvers  # noqa: F401  (the configs use its resolvers)

    # Hydra finds plugins by listing the folders of the hydra_plugins package, which misses the one of an editable
    # install (a setuptools import hook): the project's sweeper and Ray launcher are registered by name.
    Plugins.instance().register(OptunaSweeper)
    Plugins.instance().register(RayLauncher)

    sys.argv = exit_on_user_error(prepare_argv)(sys.argv, config_name)
    lightning_messages_to_stdout()
    # conf/hydra/launcher/ sets the launcher plugins' options under their own names; Hydra 1.3 merges such a file
    # with the plugin's schema and warns that it will stop doing so, which is harmless: the files are complete.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
    hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)(exit_on_user_error(task))()
