"""Every config in conf/ composes and builds, and every setting a user can type wrong is refused, naming the key,
before anything is written."""

import math
import shutil

import pytest
import torch
from conftest import CONF, TINY, compose_train, run_script
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.cli.app import check_group_choices, prepare_argv
from ddpm.cli.runtime import user_error
from ddpm.commands.compare import make_sampler
from ddpm.commands.evaluate import evaluate
from ddpm.commands.sample import sample
from ddpm.commands.train import build, train
from ddpm.data.mnist import MNISTDataModule
from ddpm.diffusion.schedules import LinearSchedule, NoiseSchedule
from ddpm.errors import ConfigError
from ddpm.models.unet import UNet
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, SDEDPMSolverSampler
from ddpm.training.module import DiffusionModule

GROUPS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
          for group in ("schedule", "model", "data", "trainer", "logger", "callbacks", "paths")}
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
COMMANDS = sorted(p.stem for p in CONF.glob("*.yaml"))
SAMPLERS = sorted(p.stem for p in (CONF / "sampler").glob("*.yaml"))
CPU = ["trainer.accelerator=cpu", "trainer.devices=1"]  # trainer=gpu and trainer=ddp, built on any machine


@pytest.fixture
def data(shared_synthetic_mnist):
    return shared_synthetic_mnist


def build_training(cfg, tmp_path):
    """What train(cfg) builds before it fits (ddpm.commands.train.build): module, data, trainer."""
    module, datamodule, trainer, _ = build(cfg, multirun=False)
    assert isinstance(module, DiffusionModule) and isinstance(datamodule, MNISTDataModule)
    assert isinstance(module.net, UNet) and isinstance(module.diffusion.schedule, NoiseSchedule)
    assert not tmp_path.joinpath("run").exists()  # building writes nothing
    return module, datamodule, trainer


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_config_composes_and_resolves(command, tmp_path):
    cfg = compose_train(tmp_path / "run", [], config_name=command)
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert container["task_name"] == command
    assert container["paths"]["output_dir"] == str(tmp_path / "run")


@pytest.mark.parametrize("group, option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_builds_a_training_run(group, option, data, tmp_path):
    cfg = compose_train(tmp_path / "run", [*TINY, *CPU, f"{group}={option}", f"data.root={data}",
                                           "data.check_md5=false"])
    module, *_ = build_training(cfg, tmp_path)
    if group == "model":
        assert module.net.time_dim == cfg.model.channels
    if group == "schedule":
        assert type(module.diffusion.schedule).__name__.lower().startswith(option)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_builds_a_training_run(experiment, data, tmp_path):
    cfg = compose_train(tmp_path / "run", [f"experiment={experiment}", *CPU, f"data.root={data}",
                                           "data.check_md5=false"])
    module, datamodule, trainer = build_training(cfg, tmp_path)
    assert trainer.max_steps == cfg.trainer.max_steps and datamodule.batch_size == cfg.data.batch_size
    assert module.hparams.lr == cfg.module.lr


def test_debug_tiny_wins_over_an_experiment_and_yields_to_the_command_line(tmp_path):
    """conf/train.yaml lists debug after experiment: `experiment=quickstart debug=tiny` is the quickstart's schedule
    on the tiny run; what the command line says still wins over both."""
    cfg = compose_train(tmp_path / "run", ["experiment=quickstart", "debug=tiny", "trainer.max_steps=3"])
    assert cfg.model.channels == 12 and cfg.schedule.timesteps == 100 and cfg.trainer.accelerator == "cpu"
    assert cfg.schedule._target_.endswith("CosineSchedule") and cfg.module.min_snr_gamma == 5
    assert cfg.trainer.max_steps == 3 and cfg.data.train_size == 256 and cfg.callbacks.sample_grid.sampler.steps == 5


def test_callbacks_take_their_samplers_from_the_sampler_group(tmp_path):
    cfg = compose_train(tmp_path / "run", [])
    grid, metrics = instantiate(cfg.callbacks.sample_grid.sampler), instantiate(cfg.callbacks.sample_metrics.sampler)
    assert isinstance(grid, SDEDPMSolverSampler) and grid.steps == 29 and grid.order == 2
    assert isinstance(metrics, SDEDPMSolverSampler) and metrics.steps == 29
    other = compose_train(tmp_path / "run", ["sampler@callbacks.sample_grid.sampler=dpmpp",
                                             "callbacks.sample_grid.sampler.steps=8"])
    assert repr(instantiate(other.callbacks.sample_grid.sampler)) == "DPMSolverSampler(steps=8)"


def sampling_settings(conf_dir):
    """(sampler class, steps, w, interval) as sample, evaluate, compare's grids and the two training callbacks
    compose them from the configs in conf_dir."""
    def setting(node, steps=None):
        sampler = make_sampler(node.sampler, steps)
        interval = None if node.guidance_interval is None else tuple(node.guidance_interval)
        return type(sampler).__name__, sampler.steps, float(node.guidance), interval

    def composed(name, *given):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(name, overrides=list(given))

    train = composed("train")
    compare = composed("compare", "runs=x")
    return {"sample": setting(composed("sample", "ckpt=x")), "evaluate": setting(composed("evaluate", "ckpt=x")),
            "compare": setting(compare.grid, compare.grid.steps),
            **{name: setting(train.callbacks[name]) for name in ("sample_grid", "sample_metrics")}}


def test_the_default_sampling_setting_has_one_home_that_every_command_and_callback_reads(tmp_path):
    """sample, evaluate, compare's grids and the training callbacks all read conf/sampling/default.yaml: a change
    there (here in a copy of conf/) reaches all five, so that a new measured default cannot leave one behind."""
    assert set(sampling_settings(CONF).values()) == {("SDEDPMSolverSampler", 29, 1.31, (-0.83, math.inf))}
    copy = tmp_path / "conf"
    shutil.copytree(CONF, copy)
    (copy / "sampling" / "default.yaml").write_text(
        "defaults:\n  - /sampler: ddim\n  - _self_\nguidance: 0.25\nguidance_interval: [-2, 2]\n")
    assert set(sampling_settings(copy).values()) == {("DDIMSampler", 50, 0.25, (-2.0, 2.0))}


def test_the_sampling_setting_still_takes_each_commands_own_overrides(tmp_path):
    """The command lines of before the one home: sample's sampler= and guidance=, the callbacks' own keys, and
    compare's grid sampler by group option or by name."""
    sample = compose_train(tmp_path / "s", ["ckpt=x", "sampler=dpmpp", "guidance=0", "guidance_interval=null"],
                           config_name="sample")
    assert (repr(instantiate(sample.sampler)), sample.guidance, sample.guidance_interval) == (
        "DPMSolverSampler(steps=20)", 0, None)
    train = compose_train(tmp_path / "t", ["sampler@callbacks.sample_grid.sampler=ddim",
                                           "callbacks.sample_grid.guidance=3", "callbacks.sample_metrics.guidance=0"])
    assert (repr(instantiate(train.callbacks.sample_grid.sampler)), train.callbacks.sample_grid.guidance) == (
        "DDIMSampler(steps=50, eta=0.0)", 3)
    assert train.callbacks.sample_metrics.guidance == 0
    assert list(train.callbacks.sample_grid.guidance_interval) == [-0.83, math.inf]
    for given in (["sampler@grid.sampler=ddim"], ["grid.sampler=ddim"]):  # a group option, or the yaml's name
        compare = compose_train(tmp_path / "c", ["runs=x", *given, "grid.steps=7"], config_name="compare")
        assert repr(make_sampler(compare.grid.sampler, compare.grid.steps)) == "DDIMSampler(steps=7, eta=0.0)"


@pytest.mark.parametrize("command", ["sample", "evaluate"])
@pytest.mark.parametrize(
    "sampler, default, kind", [("ddim", 50, DDIMSampler), ("ddpm", None, DDPMSampler), ("dpmpp", 20, DPMSolverSampler)]
)
def test_each_sampler_owns_its_default_steps_and_steps_overrides_it(command, sampler, default, kind, tmp_path):
    """The command hands its `steps` to the sampler's set_timesteps once T is known (None: the sampler's default)."""
    def built(*overrides):
        cfg = compose_train(tmp_path / "run", [f"sampler={sampler}", *overrides], config_name=command)
        sampler_ = instantiate(cfg.sampler)
        return sampler_, sampler_.set_timesteps(cfg.steps, LinearSchedule(1000))

    default_sampler, timesteps = built()
    assert isinstance(default_sampler, kind) and default_sampler.steps == default
    assert len(timesteps) == (default or 1000)
    respaced, timesteps = built("steps=50")
    assert respaced.steps == 50 and len(timesteps) == 50
    own, timesteps = built("sampler.steps=7")
    assert own.steps == 7 and len(timesteps) == 7
    explicit, timesteps = built("steps=50", "sampler.steps=7")  # the command's steps wins, as before
    assert explicit.steps == 50 and len(timesteps) == 50


# One wrong value per setting: the override, and the start of the one-line message.
TRAIN_REFUSALS = [
    (["schedule.timesteps=1"], "schedule.timesteps=1 is invalid: use an integer >= 2"),
    (["schedule.timesteps=abc"], "schedule.timesteps=abc is invalid"),
    (["schedule.beta_start=0"], "schedule.beta_start=0 is invalid: use a number in (0, 0.02)"),
    (["schedule.beta_end=1.5"], "schedule.beta_end=1.5 is invalid: use a number in (0, 1)"),
    (["schedule=cosine", "schedule.s=-0.5"], "schedule.s=-0.5 is invalid: use a number > 0"),
    (["schedule=cosine", "schedule.max_beta=1"], "schedule.max_beta=1 is invalid: use a number in (0, 1)"),
    (["schedule=sigmoid", "schedule.tau=0"], "schedule.tau=0 is invalid: use a number > 0"),
    (["schedule=sigmoid", "schedule.start=5"], "schedule.start=5 is invalid: use a number < 3 (below schedule.end)"),
    (["model.channels=7"], "model.channels=7 is invalid: use an even number"),
    (["model.channels=0"], "model.channels=0 is invalid: use an integer >= 2"),
    (["model.attention=true", "model.channels=10", "model.channel_mults=[1,1,1]"],
     "model.channels=10 is invalid: use a multiple of 4"),
    (["model.channel_mults=[1,0]"], "model.channel_mults=[1,0] is invalid"),
    (["model.channel_mults=[1,2,2,2]"], "model.channel_mults=[1,2,2,2] is invalid: use fewer levels"),
    (["model.num_res_blocks=0"], "model.num_res_blocks=0 is invalid: use an integer >= 1"),
    (["model.num_classes=-1"], "model.num_classes=-1 is invalid: use an integer >= 0"),
    (["model.dropout=1"], "model.dropout=1 is invalid: use a number in [0, 1)"),
    (["model.patch_size=3"], "model.patch_size=3 is invalid: use a divisor of the image size 28"),
    (["model.attention=maybe"], "model.attention=maybe is invalid: use true or false"),
    (["data.batch_size=0"], "data.batch_size=0 is invalid: use an integer >= 1"),
    (["data.batch_size=1.5"], "data.batch_size=1.5 is invalid"),
    (["data.batch_size=200"], "data.batch_size=200 is larger than the 128 training images"),
    (["data.train_size=0"], "data.train_size=0 is invalid: use an integer >= 1, or null"),
    (["data.val_size=0"], "data.val_size=0 is invalid"),
    (["data.val_timesteps=0"], "data.val_timesteps=0 is invalid"),
    (["data.val_seed=-1"], "data.val_seed=-1 is invalid"),
    (["data.download=maybe"], "data.download=maybe is invalid: use true or false"),
    (["data.check_md5=1"], "data.check_md5=1 is invalid: use true or false"),
    (["seed=-1"], "seed=-1 is invalid: use an integer from 0 to 4294967295"),
    (["module.lr=-1"], "module.lr=-1 is invalid: use a number >= 0"),
    (["module.lr=abc"], "module.lr=abc is invalid: use a number >= 0"),
    (["module.cond_drop_prob=1.5"], "module.cond_drop_prob=1.5 is invalid: use a number in [0, 1)"),
    (["module.weight_decay=-0.1"], "module.weight_decay=-0.1 is invalid: use a number >= 0"),
    (["module.warmup_steps=-1"], "module.warmup_steps=-1 is invalid: use an integer >= 0"),
    (["module.prediction=score"], "module.prediction=score is invalid: use one of eps, x0, v"),
    (["module.min_snr_gamma=0"], "module.min_snr_gamma=0 is invalid: use a number > 0, or null"),
    (["module.cosine_decay=yes"], "module.cosine_decay=yes is invalid: use true or false"),
    (["module.channels_last=1"], "module.channels_last=1 is invalid: use true or false"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 is invalid: use an integer >= 1, or -1 for no limit"),
    (["trainer.max_steps=-2"], "trainer.max_steps=-2 is invalid"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is invalid"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval=0 is invalid: use a number in (0, 1]"),
    (["trainer.val_check_interval=1.5"], "trainer.val_check_interval=1.5 is invalid"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 is invalid"),
    (["trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps=-2 is invalid"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 is invalid"),
    (["+trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 is invalid"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is invalid: use a number >= 0, or null"),
    (["trainer.gradient_clip_algorithm=l2"], "trainer.gradient_clip_algorithm=l2 is invalid: use one of norm, value"),
    (["trainer.precision=8"], "trainer.precision=8 is invalid: use one of"),
    (["trainer.enable_progress_bar=no"], "trainer.enable_progress_bar=no is invalid: use true or false"),
    (["trainer.devices=0"], "trainer: Lightning refuses these settings: `Trainer(devices=0)`"),
    (["trainer.accelerator=tpu2"],
     "trainer: Lightning refuses these settings: You selected an invalid accelerator name"),
    (["callbacks.ema.decay=1"], "callbacks.ema.decay=1 is invalid: use a number in (0, 1)"),
    (["callbacks.periodic_checkpoint.every_n_train_steps=0"],
     "callbacks.periodic_checkpoint.every_n_train_steps=0 is invalid"),
    (["callbacks.sample_grid.guidance=-1"], "callbacks.sample_grid.guidance=-1 is invalid: use a number >= 0"),
    (["callbacks.sample_grid.seed=-1"], "callbacks.sample_grid.seed=-1 is invalid"),
    (["callbacks.sample_grid.sampler.steps=0"],
     "steps=0 is invalid: use an integer from 1 to the schedule's timesteps"),
    (["sampler@callbacks.sample_grid.sampler=ddim", "callbacks.sample_grid.sampler.eta=2"],
     "sampler.eta=2 is invalid: use a number in [0, 1]"),
    (["callbacks.sample_grid.sampler.order=3"], "sampler.order=3 is invalid: use one of 1, 2"),
    (["sampler@callbacks.sample_grid.sampler=ddpm", "callbacks.sample_grid.sampler.variance=fixed"],
     "sampler.variance=fixed is invalid: use one of posterior, beta"),
    (["callbacks.sample_metrics.n=0"], "callbacks.sample_metrics.n=0 is invalid"),
    (["callbacks.sample_grid.guidance_interval=[5,1]"],
     "callbacks.sample_grid.guidance_interval=[5,1] is invalid: use [lo, hi]"),
    (["callbacks.sample_metrics.guidance_interval=[1]"], "callbacks.sample_metrics.guidance_interval=[1] is invalid"),
    (["callbacks.sample_metrics.every_n_validations=-1"], "callbacks.sample_metrics.every_n_validations=-1 is invalid"),
]


@pytest.mark.parametrize("overrides, message", TRAIN_REFUSALS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_train_refuses_each_bad_setting_before_writing(overrides, message, data, tmp_path):
    run = tmp_path / "run"
    cfg = compose_train(run, [*TINY, f"data.root={data}", "data.check_md5=false", "data.train_size=128", *overrides])
    with pytest.raises(Exception) as raised:
        train(cfg)
    cause = user_error(raised.value)
    assert isinstance(cause, ConfigError), raised.value
    assert str(cause).startswith(message) and "\n" not in str(cause)
    assert not run.exists()


REQUEST_REFUSALS = [
    (["n=0"], "n=0 is invalid: use an integer >= 1"),
    (["n=2.5"], "n=2.5 is invalid"),
    (["guidance=-1"], "guidance=-1 is invalid: use a number >= 0"),
    (["guidance=strong"], "guidance=strong is invalid"),
    (["seed=-3"], "seed=-3 is invalid"),
    (["batch_size=0"], "batch_size=0 is invalid"),
    (["ema=2"], "ema=2 is invalid: use true or false"),
    (["device=gpu"], "device=gpu is invalid: use auto, cpu, cuda or cuda:N"),
    (["steps=0"], "steps=0 is invalid: use an integer from 1 to the schedule's timesteps"),
    (["sampler=ddpm", "steps=0"],
     "steps=0 is invalid: use an integer from 1 to the schedule's timesteps, or null for the sampler's default"),
    (["sampler=ddpm", "sampler.steps=0"],
     "steps=0 is invalid: use an integer from 1 to the schedule's timesteps, or null for all of them"),
    (["guidance_interval=[5,1]"],
     "guidance_interval=[5,1] is invalid: use [lo, hi] with lo <= hi, log-SNR values, e.g. [-2, 4]"),
    (["guidance_interval=[1]"], "guidance_interval=[1] is invalid: use [lo, hi]"),
    (["guidance_interval=[nan,1]"], "guidance_interval=[nan,1] is invalid: use [lo, hi]"),
    (["guidance_interval=wide"], "guidance_interval=wide is invalid: use [lo, hi]"),
    (["steps=-5"], "steps=-5 is invalid"),
    (["steps=many"], "steps=many is invalid"),
    (["sampler=ddpm", "steps=2.5"], "steps=2.5 is invalid"),
    (["sampler=ddim", "sampler.eta=-0.1"], "sampler.eta=-0.1 is invalid: use a number in [0, 1]"),
    (["sampler=ddim", "sampler.eta=1.5"], "sampler.eta=1.5 is invalid"),
    (["sampler=ddpm", "sampler.variance=fixed"], "sampler.variance=fixed is invalid: use one of posterior, beta"),
]
SAMPLE_ONLY = [
    (["digit=12"], "digit=12 is not a class label: use 0-9"),
    (["digit=seven"], "digit=seven is not a class label"),
    (["nrow=0"], "nrow=0 is invalid"),
    (["trajectory_frames=1"], "trajectory_frames=1 is invalid: use an integer >= 2"),
    (["clip_x0=no"], "clip_x0=no is invalid: use true or false"),
    (["unconditional=1"], "unconditional=1 is invalid"),
    (["trajectory=yes"], "trajectory=yes is invalid"),
]


@pytest.mark.parametrize(
    "command, overrides, message",
    [("sample", o, m) for o, m in REQUEST_REFUSALS + SAMPLE_ONLY] + [("evaluate", o, m) for o, m in REQUEST_REFUSALS],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v if v in ("sample", "evaluate") else "",
)
def test_sample_and_evaluate_refuse_each_bad_option(command, overrides, message, tmp_path):
    """The checks that run before the checkpoint is read: the request's options, then the sampler's."""
    run = tmp_path / "run"
    cfg = compose_train(run, [f"ckpt={tmp_path / 'never_read.ckpt'}", *overrides], config_name=command)
    with pytest.raises(Exception) as raised:
        {"sample": sample, "evaluate": evaluate}[command](cfg)
    cause = user_error(raised.value)
    assert isinstance(cause, ConfigError) and str(cause).startswith(message), raised.value
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="device=cuda is invalid: use auto or cpu: no CUDA device is visible"):
        sample(compose_train(tmp_path / "run", [f"ckpt={tmp_path / 'never_read.ckpt'}", "device=cuda"],
                             config_name="sample"))


@pytest.mark.slow
def test_bad_setting_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
    """The README's promise, through train.py itself: one `error:` line, exit status 2, no run folder."""
    run = tmp_path / "run"
    proc = run_script("train.py", "model=tiny", "trainer.max_steps=2", "data.batch_size=0", f"hydra.run.dir={run}",
                      check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: data.batch_size=0 is invalid: use an integer >= 1, e.g. 128"]
    assert not run.exists()


@pytest.mark.parametrize("argv, message", [
    (["schedule=cosin"], "schedule=cosin is unknown: use one of cosine, linear, sigmoid"),
    (["debug=huge"], "debug=huge is unknown: use one of tiny"),
    (["-m", "hydra/launcher=slurm"],
     "hydra/launcher=slurm is unknown: use one of basic, ray, submitit_local, submitit_slurm"),
    (["-m", "model=tiny,huge"], "model=huge is unknown: use one of base, small, tiny"),
])
def test_an_unknown_group_option_is_one_line_before_hydra_composes(argv, message):
    """What run_app checks on the command line before Hydra, whose own message spans a dozen lines."""
    with pytest.raises(ConfigError, match=f"^{message}$"):
        check_group_choices(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["train.py", "schedule=linear,cosine", "-m", "trainer.max_steps=100"],
        ["train.py", "schedule=linear,cosine", "trainer.max_steps=100", "--multirun"],
        ["train.py", "-m", "schedule=linear,cosine", "trainer.max_steps=100"],
    ],
)
def test_multirun_flag_anywhere(argv):
    """Hydra's own parser stops at overrides after a flag ("unrecognized arguments"); prepare_argv puts it first."""
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["schedule=linear,cosine", "-m", "trainer.max_steps=100"])
    prepared = prepare_argv(argv)
    args = get_args_parser().parse_args(prepared[1:])
    assert args.multirun and args.overrides == ["schedule=linear,cosine", "trainer.max_steps=100"]


COMPARE_REFUSALS = [
    (["n=1"], "n=1 is invalid: use an integer >= 2"),
    (["seed=-1"], "seed=-1 is invalid"),
    (["main_guidance=-2"], "main_guidance=-2 is invalid: use a number >= 0"),
    (["ddim_steps=0"], "ddim_steps=0 is invalid"),
    (["grid.steps=0"], "grid.steps=0 is invalid"),
    (["grid.sampler=euler"], "grid.sampler=euler is invalid: use one of"),
    (["grid.guidance=-1"], "grid.guidance=-1 is invalid: use a number >= 0"),
    (["grid.guidance_interval=[3,-3]"], "grid.guidance_interval=[3,-3] is invalid: use [lo, hi]"),
    (["batch_size=0"], "batch_size=0 is invalid"),
    (["floor_subsets=0"], "floor_subsets=0 is invalid"),
    (["nll.n=-1"], "nll.n=-1 is invalid: use an integer >= 0 (0: no bits/dim)"),
    (["nll.draws=0"], "nll.draws=0 is invalid"),
    (["nll.variance=fixed"], "nll.variance=fixed is invalid: use one of posterior, beta"),
    (["points=[{sampler:ddim,steps:[0]}]"], "points: steps=0 is invalid"),
    (["points=[{sampler:ddim,guidance:[-1]}]"], "points: guidance=-1 is invalid"),
    (["points=[{sampler:ddim,checkpoint:last}]"], "points entry"),
]


@pytest.mark.parametrize("overrides, message", COMPARE_REFUSALS,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_compare_refuses_each_bad_option_before_reading_a_run(overrides, message, tmp_path):
    from ddpm.commands.compare import compare

    cfg = compose_train(tmp_path / "report", [f"runs={tmp_path / 'no_such_run'}", *overrides], config_name="compare")
    with pytest.raises(ConfigError) as raised:
        compare(cfg)  # a missing run folder would be refused too, later: the options come first
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("overrides, message", [(["width=0"], "width=0 is invalid"),
                                                (["num_features=-3"], "num_features=-3 is invalid")])
def test_classifier_command_refuses_a_bad_size_before_reading_mnist(overrides, message, tmp_path):
    from ddpm.commands.judge import run

    cfg = compose_train(tmp_path / "cnn", [f"data.root={tmp_path / 'no_mnist'}", "data.download=false", *overrides],
                        config_name="classifier")
    with pytest.raises(ConfigError, match=f"^{message}"):
        run(cfg)


@pytest.mark.parametrize("option, value, message", [("epochs", 0, "epochs=0 is invalid"), ("lr", 0, "lr=0 is invalid"),
                                                    ("batch_size", 65, "batch_size=65 is invalid"),
                                                    ("seed", -1, "seed=-1 is invalid")])
def test_classifier_training_refuses_bad_options(option, value, message):
    from ddpm.evaluation.judge import train_judge

    images, labels = torch.zeros(64, 1, 28, 28, dtype=torch.uint8), torch.zeros(64, dtype=torch.long)
    with pytest.raises(ConfigError, match=f"^{message}"):
        train_judge(images, labels, images, labels, **{"batch_size": 32, option: value})


def test_a_refused_call_leaves_no_empty_folders(tmp_path, monkeypatch):
    """The run folder goes, wherever it is; the empty parents Hydra made for it go too, inside the working folder."""
    from ddpm.cli.runtime import remove_empty

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "sample" / "runs" / "a").mkdir(parents=True)
    (tmp_path / "outputs" / "train").mkdir()
    remove_empty(tmp_path / "outputs" / "sample" / "runs" / "a")
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["train"]
    elsewhere = tmp_path.parent / f"{tmp_path.name}_elsewhere" / "run"
    elsewhere.mkdir(parents=True)
    remove_empty(elsewhere)
    assert not elsewhere.exists() and elsewhere.parent.exists()
    elsewhere.parent.rmdir()
