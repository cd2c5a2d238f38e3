"""Compare runs side by side in one report: report.md, results.csv (one row per run, checkpoint, sampler, steps,
guidance and guidance interval, with the network evaluations per image), summary.csv (mean and spread over seeds)
and figures.

    ddpm-compare runs=outputs/train/multiruns/<date>_<time>     # every run folder inside
    ddpm-compare 'runs=[path/to/run_a,path/to/run_b]' plan=quick

Which points are scored is the `plan` group (conf/plan/, or an inline `points=[...]`): sampler (a yaml of
conf/sampler/), step counts, guidance scales, and whether at the last checkpoint only or also at the milestones (1/4,
1/2, 3/4 of the run). Runs whose saved configs differ only in the seed (and where they read and wrote) are the seeds
of one arm, and pooled; an arm is named by the settings that set it apart from the others ("cosine, model=base";
ddpm.evaluation.runs). Every FID stands beside the real-vs-real floor at the same n, every KID has its spread, a
second judge gives a second feature space, and each checkpoint gets its variational bound in bits/dim. Scores are
cached in each run folder (scores.json), so a report over more runs or more points samples only what is new. Each
arm's sample grid is drawn in its own sampling setting: per key, the command line's grid.<key>, else its checkpoint's,
else the package default (ddpm.sampling.setting); the report and the log say which.
"""

import logging
from functools import partial
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ddpm.cli.app import run_app
from ddpm.cli.runtime import CONF, resolve_device
from ddpm.data.mnist import load_mnist_split
from ddpm.diffusion.likelihood import VARIANCES
from ddpm.errors import ConfigError
from ddpm.evaluation.points import expand_points
from ddpm.evaluation.report import draw_figures, write_report
from ddpm.evaluation.results import RESULT_COLUMNS, SUMMARY_COLUMNS, merge_results, summarise, write_csv
from ddpm.evaluation.runs import NAMED_GROUPS, Run, describe, find_runs, label_arms
from ddpm.evaluation.scores import build_scorer
from ddpm.evaluation.study import GridSetting, arm_pictures, score_run
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.setting import command_setting
from ddpm.training.checkpoint import load_module
from ddpm.validation import integer, number, one_of, positive_int

log = logging.getLogger(__name__)
SAMPLERS = {path.stem: path for path in sorted((CONF / "sampler").glob("*.yaml"))}
# The options an arm's label names a run's model and schedule by (`model=base`).
OPTIONS = {group: {path.stem: OmegaConf.to_container(OmegaConf.load(path)) for path in (CONF / group).glob("*.yaml")}
           for group in NAMED_GROUPS}


def make_sampler(sampler: str | DictConfig, steps: int | None = None):
    """A sampler from its config, or from conf/sampler/<name>.yaml given its name, with `steps` as its default step
    count unless None."""
    config = OmegaConf.load(SAMPLERS[sampler]) if isinstance(sampler, str) else sampler
    return instantiate(config, **({} if steps is None else {"steps": steps}))


def check_options(cfg: DictConfig) -> None:
    """compare.yaml's own settings, before any run is read."""
    integer("n", cfg.n, low=2, hint=", e.g. 1000 (KID needs two samples)")
    integer("seed", cfg.seed, low=0, high=2**32 - 1)
    number("main_guidance", cfg.main_guidance, low=0)
    positive_int("ddim_steps", cfg.ddim_steps)
    if isinstance(cfg.grid.sampler, str):  # grid.sampler=ddim, beside sampler@grid.sampler=ddim
        one_of("grid.sampler", cfg.grid.sampler, SAMPLERS)
    positive_int("grid.steps", cfg.grid.steps, optional=True, hint=" (null: the sampler's own)")
    number("grid.guidance", cfg.grid.guidance, low=0)
    check_interval("grid.guidance_interval", cfg.grid.guidance_interval)
    positive_int("batch_size", cfg.batch_size)
    positive_int("floor_subsets", cfg.floor_subsets)
    integer("nll.n", cfg.nll.n, low=0, hint=" (0: no bits/dim)")
    positive_int("nll.draws", cfg.nll.draws)
    one_of("nll.variance", cfg.nll.variance, VARIANCES)


def grid_setting(cfg: DictConfig, arm: str, run: Run) -> GridSetting:
    """The setting of an arm's grid (ddpm.sampling.setting): per key, grid.<key> where the command line gives it, else
    the setting stored for its first seed's last checkpoint (the run's tuned sampling.yaml first), else
    conf/sampling/default.yaml; refused in one line naming the arm before anything is sampled."""
    ckpt = run.path / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    try:
        values, sources = command_setting(cfg, module.sampling_setting, ckpt=ckpt, conditional=module.conditional,
                                          prefix="grid")
        sampler = make_sampler(values["sampler"], values["steps"])
        sampler.set_timesteps(None, module.diffusion.schedule)  # refuses steps > T
        guidance = number("grid.guidance", values["guidance"], low=0)
        interval = check_interval("grid.guidance_interval", values["guidance_interval"])
    except ConfigError as e:
        raise ConfigError(f"the grid of {arm}: {e}") from None
    return GridSetting(sampler, float(guidance), interval, sources)


def compare(cfg: DictConfig) -> Path:
    check_options(cfg)
    points = expand_points(cfg.points, SAMPLERS)
    paths = find_runs(list(cfg.runs) if isinstance(cfg.runs, ListConfig) else cfg.runs)
    out = Path(cfg.paths.output_dir)
    device = resolve_device(cfg.device)
    runs = [describe(p) for p in paths]
    arms = label_arms(runs, OPTIONS)
    representatives = {arm: min(members, key=lambda run: run.seed) for arm, members in arms.items()}
    grid_settings = {arm: grid_setting(cfg, arm, run) for arm, run in representatives.items()}
    scorer = build_scorer(cfg.data, cfg.classifier, cfg.get("classifier2"), cfg.floor_subsets, device)
    scorer.check_n("n", cfg.n)
    test_images, _ = load_mnist_split(cfg.data.root, "test", cfg.data.download, cfg.data.check_md5)
    out.mkdir(parents=True, exist_ok=True)
    log.info(f"comparing {len(runs)} runs in {len(arms)} arms at {len(points)} points, n={cfg.n}: "
             + "; ".join(f"{arm} ({len(members)} seeds)" for arm, members in arms.items()))
    for arm, setting in grid_settings.items():
        log.info(f"grid of {arm}: {setting.sources}")

    rows = []
    for run in runs:
        rows += score_run(run, points, run is representatives[run.arm], cfg, scorer, test_images, device,
                          make_sampler)
    summary = summarise(rows)
    write_csv(out / "results.csv", rows, RESULT_COLUMNS)
    write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS)
    if cfg.results:
        merge_results(Path(cfg.results), rows)
    pictures, schedules = arm_pictures(representatives, grid_settings, cfg.seed, device)
    figures = draw_figures(cfg, runs, representatives, summary, out, pictures, schedules, grid_settings)
    write_report(cfg, runs, summary, figures, out, representatives, grid_settings)
    log.info(f"wrote {out / 'report.md'}")
    return out / "report.md"


# The console script (pyproject.toml) and `python -m ddpm.commands.<name>`.
main = partial(run_app, "compare", compare)


if __name__ == "__main__":
    main()
