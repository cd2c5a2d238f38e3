"""train(cfg): build everything from the composed Hydra config and fit. `train.py` at the top only wraps it."""

import contextlib
import logging
from functools import partial
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.app import run_app
from ddpm.cli.checks import check_train_options, refused_by_lightning
from ddpm.cli.runtime import check_writable, cluster_plugins, requeued_checkpoint, run_folder_lock, save_run_config
from ddpm.errors import CheckpointError, ConfigError, FolderInUseError, NonFiniteError, WriteError, argument
from ddpm.evaluation.callbacks import SampleMetrics
from ddpm.files import write_fault
from ddpm.training.checkpoint import check_resumable, load_checkpoint
from ddpm.training.hparams import HparamsSummary
from ddpm.training.precision import auto_precision
from ddpm.training.stop import StopCheckpoint

log = logging.getLogger(__name__)


def check_multirun_ddp(cfg: DictConfig, trainer: L.Trainer, multirun: bool) -> None:
    """Lightning's script launcher starts DDP's other ranks by re-running the command line with `hydra.run.dir`,
    which a -m sweep job does not use, so they would train elsewhere (Lightning PR #18175, open upstream). Decided
    from the strategy Lightning resolved: `trainer=gpu` (strategy auto) on a machine with several GPUs is DDP too.
    Spawned ranks (ddp_spawn) and ranks a cluster starts (one SLURM task per device) re-run nothing."""
    launcher = trainer.strategy.launcher
    if (
        multirun
        and isinstance(launcher, _SubprocessScriptLauncher)
        and launcher.num_processes > 1
        and not launcher.cluster_environment.creates_processes_externally
    ):
        strategy = cfg.trainer.get("strategy", "auto")
        raise ConfigError(
            f"trainer.strategy={strategy} (DDP on {launcher.num_processes} devices) cannot run under -m "
            "(multirun): Lightning's DDP launcher re-runs the script per device, which breaks a Hydra sweep; use "
            "trainer=ddp_spawn, or hydra/launcher=submitit_slurm (one SLURM task per device)"
        )


def check_optimized_metric(cfg: DictConfig) -> None:
    """metrics/* are logged only by the sample_metrics callback, so a search over them needs it on."""
    name = cfg.get("optimized_metric")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"optimized_metric={name} is not a metric name: use e.g. val/loss or metrics/fid")
    every = OmegaConf.select(cfg, "callbacks.sample_metrics.every_n_validations") or 0
    if name and name.startswith("metrics/") and every <= 0:
        raise ConfigError(
            f"optimized_metric={name} is logged only when the metrics callback is on: "
            "set callbacks.sample_metrics.every_n_validations=1 (or more)"
        )


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to continue from: `resume=RUN` means RUN/checkpoints/last.ckpt; `ckpt_path` any checkpoint; a
    requeued SLURM job its own last.ckpt."""
    if not cfg.get("resume"):
        requeued = requeued_checkpoint(cfg.paths.output_dir)
        return cfg.get("ckpt_path") or (str(requeued) if requeued else None)
    path = Path(cfg.resume).expanduser() / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(
            f"resume={cfg.resume} has no checkpoints/last.ckpt: the run stopped before its first checkpoint "
            f"(callbacks.periodic_checkpoint.every_n_train_steps); start it again without resume="
        )
    return str(path)


def check_unfinished(cfg: DictConfig, checkpoint: dict, ckpt_path: str, trainer: L.Trainer) -> None:
    """A checkpoint at trainer.max_steps has nothing left to train; Lightning would still open a new event file (and
    resume= rewrite the run's .hydra/) before ending without a metric. trainer.max_steps given on the command line
    wins over the run's own (ddpm.cli.app.resume_args), so raising it continues the run."""
    step = checkpoint.get("global_step", 0)
    if not 0 < trainer.max_steps <= step:
        return
    given = f"resume={cfg.resume}" if cfg.get("resume") else f"ckpt_path={cfg.ckpt_path}"
    where = f"finished at step {step} of {step}" if step == trainer.max_steps else (
        f"at step {step}, past trainer.max_steps={trainer.max_steps}")
    raise CheckpointError(
        f"{given}: the run is {where}: raise trainer.max_steps={2 * step} (or any number above {step}) to train "
        f"further, or sample from {ckpt_path}"
    )


def run_hparams(cfg: DictConfig) -> dict:
    """The settings that tell a sweep's runs apart, flat (`schedule.s`, `module.lr`, ...), for TensorBoard's HPARAMS."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    params = {"schedule": choices.get("schedule"), "model": choices.get("model")}
    for group in ("schedule", "model", "module"):
        values = OmegaConf.to_container(cfg[group], resolve=True)
        params.update({f"{group}.{key}": v for key, v in values.items() if key not in ("_target_", "net", "schedule")})
    for key in ("trainer.max_steps", "trainer.gradient_clip_val", "data.batch_size", "data.train_size", "seed",
                "callbacks.ema.decay", "callbacks.ema.power"):
        params[key] = OmegaConf.select(cfg, key)
    return params


def last_checkpoint(trainer: L.Trainer) -> tuple[Path, int] | None:
    """The run's checkpoint of the latest step, and its step: by the step it holds, not by the file's time, which a
    clock set back would reorder. Every one was written whole (AtomicCheckpointIO)."""
    saved = {p for c in trainer.checkpoint_callbacks for p in Path(c.dirpath).glob("*.ckpt")}
    steps = {p: load_checkpoint(p)["global_step"] for p in saved}
    if not steps:
        return None
    last = max(steps, key=lambda p: (steps[p], p.name == "last.ckpt"))
    return last, steps[last]


def last_good_checkpoint(trainer: L.Trainer) -> str:
    """Every checkpoint was written before the step that failed (whose update was never applied)."""
    last = last_checkpoint(trainer)
    if last is None:
        return "no checkpoint had been written yet: lower module.lr or trainer.gradient_clip_val and start again"
    return f"{last[0]} (step {last[1]}) is kept: resume from it with a lower module.lr or trainer.gradient_clip_val"


def stopped_by_the_disk(fault: WriteError, trainer: L.Trainer, run: str) -> WriteError:
    """A write that failed during training (a checkpoint, an event file, a grid), and where resume= goes on from."""
    last = Path(run) / "checkpoints" / "last.ckpt"
    if last.is_file():
        kept = (f"{last} (step {load_checkpoint(last)['global_step']}) is whole: make room, then resume with "
                f"{argument('resume', run)}")
    else:
        kept = "it had saved no checkpoints/last.ckpt yet: make room, then start it again"
    return WriteError(f"{fault}: training stopped at step {trainer.global_step}; {kept}")


def build(cfg: DictConfig, multirun: bool):
    """The module, data, trainer and checkpoint to resume from, built from `cfg`: everything a config can get wrong
    is checked here, before the first file is written."""
    check_train_options(cfg)
    check_writable(cfg.paths.output_dir)
    check_optimized_metric(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = instantiate(cfg.module, _recursive_=False)
    ckpt_path = resume_checkpoint(cfg)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c] + [HparamsSummary(run_hparams(cfg))]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    precision = {}
    if str(cfg.trainer.get("precision")) == "auto":
        value, why = auto_precision(cfg.trainer.get("accelerator", "auto"))
        log.info(f"trainer.precision=auto: {value}, {why} (set trainer.precision=32-true or bf16-mixed to choose)")
        precision = {"precision": value}
    with refused_by_lightning("trainer"):
        plugins = [*instantiate(cfg.trainer.get("plugins") or []), *cluster_plugins()]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=plugins, **precision)
    check_multirun_ddp(cfg, trainer, multirun)
    if ckpt_path:
        check_unfinished(cfg, check_resumable(ckpt_path, module, trainer), ckpt_path, trainer)
    # The data last: prepare_data may download MNIST, which a refused checkpoint or callback must not cause.
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.batches_per_epoch(trainer.num_devices * trainer.num_nodes)
    for callback in callbacks:
        if isinstance(callback, SampleMetrics):
            callback.check_data(datamodule)
    return module, datamodule, trainer, ckpt_path


@contextlib.contextmanager
def one_run_per_folder(cfg: DictConfig, ckpt_path: str | None):
    """The run's folder for this process alone while the block runs: refused when another process trains into it,
    or when it holds the checkpoints of another run and this one does not continue it (resume=, or a requeued
    SLURM job, which continues from its own folder's last.ckpt)."""
    run = Path(cfg.paths.output_dir)
    resuming = bool(cfg.get("resume"))
    continuing = resuming or (ckpt_path is not None and Path(ckpt_path).resolve().parent.parent == run.resolve())

    def refusal(holder: str) -> str:
        if resuming:
            return (f"resume={cfg.resume}: the run is still going in {holder}: let it end, or stop it (a SIGTERM "
                    f"saves its step), then resume")
        return f"run folder {run} is in use by {holder}, which trains into it: choose another with hydra.run.dir=..."

    with run_folder_lock(run, refusal):
        saved = sorted((run / "checkpoints").glob("*.ckpt"))
        if saved and not continuing:
            raise FolderInUseError(f"run folder {run} holds the checkpoints of another run ({saved[0].name}, ...): "
                                   f"continue it with {argument('resume', run)}, or choose another folder with "
                                   f"hydra.run.dir=...")
        yield


def check_sweep_job(cfg: DictConfig, on_this_machine: bool) -> None:
    """train(cfg)'s checks for one job of a -m sweep, run for every job before the sweep writes anything. A job
    that runs elsewhere (a SLURM or Ray cluster) gets only the checks that do not depend on the machine: its data
    files and devices are that machine's."""
    if on_this_machine:
        build(cfg, multirun=True)
        return
    check_train_options(cfg)
    check_optimized_metric(cfg)
    instantiate(cfg.module, _recursive_=False)
    for c in cfg.get("callbacks", {}).values():
        if c:
            instantiate(c)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model described by `cfg`; returns the last logged metrics (train/loss, val/loss, ...)."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    module, datamodule, trainer, ckpt_path = build(cfg, multirun)
    with one_run_per_folder(cfg, ckpt_path):
        save_run_config(cfg)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e}; {last_good_checkpoint(trainer)}") from None
        except (WriteError, OSError) as e:
            fault = write_fault(e)
            if fault is None:
                raise
            raise stopped_by_the_disk(fault, trainer, cfg.paths.output_dir) from None
    for callback in trainer.callbacks:
        if isinstance(callback, StopCheckpoint):
            callback.stop_if_signalled(trainer)
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def objective(cfg: DictConfig) -> float | None:
    """train(cfg) reduced to the number a sweeper optimises: the metric named by `optimized_metric` (config)."""
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if not metrics:
        raise ConfigError(f"optimized_metric={name} was not logged: the run logged no metric (it trained no step)")
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name} was not logged: use one of {', '.join(sorted(metrics))}")
    return metrics[name]


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "train", objective)


if __name__ == "__main__":
    main()
