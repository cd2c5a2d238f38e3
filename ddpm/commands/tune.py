"""The best sampling setting of a checkpoint, by measurement: an Optuna study (TPE) over sampler x steps x guidance w x
guidance interval, each trial n digits at one sampling seed scored by judge 1 (FID), constrained by class accuracy
(>= min_accuracy) and network evaluations per image (<= max_nfe); then the best few feasible trials re-scored at
final.n over final.seeds with judge 2 beside, and the winner written to <run>/sampling.yaml, which sample and evaluate
use from then on for the run's checkpoints (ddpm.sampling.setting).

    ddpm-tune ckpt=outputs/train/runs/<run>/checkpoints/last.ckpt [n_trials=30] [n=250]

The study lives in <run>/tune/study.db (SQLite): the same command again continues it up to n_trials scored trials.
A setting's NFE is known before sampling (Sampler.evaluations, Guided.planned_nfe): one over the budget is pruned
without sampling and does not count. Needs the optuna extra (pip install -e '.[optuna]').
"""

import datetime
import importlib.metadata
import json
import logging
import math
import os
import statistics
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.app import run_app
from ddpm.cli.optuna_sweeper import absolute_sqlite, heartbeats_outside_optimize
from ddpm.cli.runtime import CONF, exit_on_user_error, installed, resolve_device
from ddpm.errors import ConfigError
from ddpm.evaluation.scores import build_scorer, score_sampler
from ddpm.sampling.guidance import Guided
from ddpm.sampling.setting import TUNED, stored_setting, tuned_path
from ddpm.training.checkpoint import load_module
from ddpm.validation import integer, is_number, number, positive_int, show

log = logging.getLogger(__name__)

INTERVALS = ("every step", "bounded", "open above")  # guidance at every step, in [lo, lo + width], in [lo, inf]


def need_optuna() -> None:
    if not installed("optuna"):
        raise ConfigError("ddpm-tune needs optuna: pip install -e '.[optuna]'")
    if int(importlib.metadata.version("optuna").split(".")[0]) < 5:  # Trial.set_constraint
        raise ConfigError(f"ddpm-tune needs optuna >= 5, this is {importlib.metadata.version('optuna')}: "
                          "pip install -e '.[optuna]'")


def sampler_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "sampler").glob("*.yaml"))


def _range(key: str, value, low: float, integers: bool = False, low_open: bool = False) -> None:
    """A [lo, hi] pair of the search space: low <= lo <= hi (low < lo when low_open)."""
    valid = OmegaConf.is_list(value) and len(value) == 2 and all(
        is_number(v) and (not integers or int(v) == v) for v in value)
    if not valid or value[0] > value[1] or value[0] < low or (low_open and value[0] == low):
        bound = "" if low == -math.inf else f"{low:g} {'<' if low_open else '<='} "
        raise ConfigError(f"{key}={show(value)} is invalid: use [lo, hi], {'integers' if integers else 'numbers'} "
                          f"with {bound}lo <= hi")


def check_options(cfg: DictConfig) -> None:
    """Everything the study takes that can be refused before the checkpoint is read."""
    positive_int("n_trials", cfg.n_trials, hint=" (scored trials of the study)")
    for key in ("seed", "study_seed", "startup_trials"):
        integer(key, cfg[key], low=0)
    number("min_accuracy", cfg.min_accuracy, 0, 1, low_open=True, hint=" (class accuracy, judge 1)")
    positive_int("max_nfe", cfg.max_nfe, hint=" (network evaluations per image)")
    for key in ("heartbeat_interval", "batch_size", "final.finalists"):
        positive_int(key, OmegaConf.select(cfg, key))
    seeds = cfg.final.seeds
    if not OmegaConf.is_list(seeds) or not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"final.seeds={show(seeds)} is invalid: use a list of distinct sampling seeds, e.g. [1,2,3]")
    for s in seeds:
        integer("final.seeds", s, low=0)
    samplers, known = cfg.search.samplers, sampler_names()
    if not OmegaConf.is_list(samplers) or not samplers:
        raise ConfigError(f"search.samplers={show(samplers)} is invalid: use a list of {', '.join(known)}")
    for name in samplers:
        if name not in known:
            raise ConfigError(f"search.samplers: {name} is unknown: use some of {', '.join(known)}")
    _range("search.steps", cfg.search.steps, 1, integers=True)
    _range("search.guidance", cfg.search.guidance, 0)
    _range("search.interval_lo", cfg.search.interval_lo, -math.inf)
    _range("search.interval_width", cfg.search.interval_width, 0, low_open=True)


def sampler_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / "sampler" / f"{name}.yaml"))


def _but_steps(sampler: dict) -> dict:
    return {k: v for k, v in sampler.items() if k != "steps"}


def setting_of(params: dict) -> dict:
    """A trial's parameters as a stored setting (the shape of checkpoint["sampling"] and sampling.yaml)."""
    sampler = {**sampler_config(params["sampler"]), "steps": params["steps"]}
    interval = {"every step": None, "bounded": [params.get("lo"), params.get("lo", 0) + params.get("width", 0)],
                "open above": [params.get("lo"), float("inf")]}[params["interval"]]
    return stored_setting(sampler, params["guidance"], interval)


def suggest(trial, search: DictConfig) -> dict:
    """Draw a setting: the interval's ends only where the interval has them."""
    trial.suggest_categorical("sampler", list(search.samplers))
    trial.suggest_int("steps", *search.steps)
    trial.suggest_float("guidance", *search.guidance)
    kind = trial.suggest_categorical("interval", INTERVALS)
    if kind != "every step":
        trial.suggest_float("lo", *search.interval_lo)
    if kind == "bounded":
        trial.suggest_float("width", *search.interval_width)
    return setting_of(trial.params)


def params_of(setting: dict, search: DictConfig) -> dict | None:
    """The trial parameters of a stored setting (the inverse of setting_of), or None where the search space does
    not hold it: a sampler config other than those of search.samplers, or a value outside a searched range."""
    names = [n for n in search.samplers if _but_steps(sampler_config(n)) == _but_steps(setting["sampler"])]
    steps = setting.get("steps") or setting["sampler"].get("steps")
    interval = setting.get("guidance_interval")
    params = {"sampler": names[0] if names else None, "steps": steps, "guidance": setting["guidance"]}
    if interval is None:
        params["interval"] = "every step"
    else:
        lo, hi = (float(v) for v in interval)
        params.update(interval="open above" if hi == math.inf else "bounded", lo=lo)
        if hi != math.inf:
            params["width"] = hi - lo
    inside = [params["sampler"] is not None, steps is not None] + [
        params[key] is not None and lo <= params[key] <= hi for key, (lo, hi) in
        (("steps", search.steps), ("guidance", search.guidance), ("lo", search.interval_lo),
         ("width", search.interval_width)) if key in params]
    return params if all(inside) else None


def incumbents(cfg: DictConfig, module) -> dict[str, dict]:
    """The settings a tuned one must beat, by name, where the search space holds them: the package default and the
    checkpoint's own."""
    default = stored_setting(OmegaConf.to_container(cfg.incumbent.sampler, resolve=True), cfg.incumbent.guidance,
                             cfg.incumbent.guidance_interval)
    found = {"package default": params_of(default, cfg.search)}
    if module.sampling_setting:
        found["checkpoint's setting"] = params_of(module.sampling_setting, cfg.search)
    return {name: params for name, params in found.items() if params is not None}


def prepared(module, setting: dict):
    """The sampler of a setting, set to its steps; the network evaluations per image it will cost; and what its
    samples depend on: two settings of equal `effect` draw bitwise the same digits at a seed (w and the interval's
    ends matter only through the steps they guide, so that an interval no step falls in is w = 0)."""
    sampler = instantiate(setting["sampler"])
    timesteps = sampler.set_timesteps(setting["steps"], module.diffusion.schedule)
    guided = Guided(module.net, torch.zeros(1, dtype=torch.long), setting["guidance"], setting["guidance_interval"],
                    module.diffusion.log_snr)
    evaluations = sampler.evaluations(timesteps)
    steps_guided = [i for i, t in enumerate(evaluations) if guided.guided_at(t)]
    effect = json.dumps([setting["sampler"], setting["steps"], steps_guided,
                         setting["guidance"] if steps_guided else 0], sort_keys=True)
    return sampler, guided.planned_nfe(evaluations), effect


def describe(setting: dict) -> str:
    name = setting["sampler"]["_target_"].rsplit(".", 1)[-1].removesuffix("Sampler")
    interval = setting["guidance_interval"]
    where = "every step" if interval is None else f"log-SNR in [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{name}-{setting['steps']}, w = {setting['guidance']:.2f} at {where}"


def identity(cfg: DictConfig) -> str:
    """What a study's trials mean: a continued study must have been run with the same."""
    return json.dumps({"ckpt": Path(cfg.ckpt).name, "ema": cfg.ema, "n": cfg.n, "seed": cfg.seed,
                       "classifier": str(Path(cfg.classifier).expanduser().resolve()),
                       "min_accuracy": cfg.min_accuracy, "max_nfe": cfg.max_nfe,
                       "search": OmegaConf.to_container(cfg.search, resolve=True)}, sort_keys=True)


def open_study(cfg: DictConfig, folder: Path):
    """The study in folder/study.db, created or continued; one run with other options is refused before anything
    is sampled. TPE is seeded past the draws of the earlier calls, so that it does not replay them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this command's own lines say what Optuna's would
    url = absolute_sqlite(f"sqlite:///{folder / 'study.db'}")
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=cfg.heartbeat_interval,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    drawn, space = 0, identity(cfg)
    if cfg.study_name in optuna.get_all_study_names(storage):
        stored = optuna.load_study(study_name=cfg.study_name, storage=storage)
        if stored.user_attrs.get("identity", space) != space:
            raise ConfigError(f"study_name={cfg.study_name} in {url} was run with other options "
                              f"({stored.user_attrs['identity']}): pass those, another study_name, or delete the study")
        drawn = len(stored.trials)
    sampler = optuna.samplers.TPESampler(seed=cfg.study_seed + drawn, n_startup_trials=cfg.startup_trials)
    study = optuna.create_study(study_name=cfg.study_name, storage=storage, sampler=sampler,
                                direction="minimize", load_if_exists=True)
    study.set_user_attr("identity", space)
    return study, url


def enqueue_incumbents(study, found: dict[str, dict]) -> None:
    """The incumbents the study has not tried yet go first, so that the search starts from them and the re-scoring
    sets them beside what it finds."""
    tried = {t.user_attrs.get("incumbent") for t in study.get_trials(deepcopy=False)}
    for name, params in found.items():
        if name not in tried:
            study.enqueue_trial(params, user_attrs={"incumbent": name})


def scored(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def run_study(cfg: DictConfig, study, module, scorer) -> None:
    """Trials until the study holds n_trials scored ones; one line each."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    def objective(trial) -> float:
        setting = suggest(trial, cfg.search)
        sampler, nfe, effect = prepared(module, setting)
        trial.set_user_attr("effect", effect)
        # The constraints (Optuna's convention: feasible when <= 0), which TPE reads from the trial.
        trial.set_user_attr("nfe", nfe)
        trial.set_constraint("nfe", nfe - cfg.max_nfe)
        if nfe > cfg.max_nfe:
            log.info(f"trial #{trial.number}: {describe(setting)}: {nfe} NFE > max_nfe={cfg.max_nfe}, pruned unsampled")
            raise optuna.TrialPruned()
        with torch.inference_mode():
            scores = score_sampler(module, sampler, scorer, cfg.n, setting["guidance"], cfg.seed, cfg.batch_size,
                                   setting["guidance_interval"])
        for key in ("fid", "fid_floor", "class_accuracy", "sampling_seconds"):
            trial.set_user_attr(key, scores[key])
        trial.set_constraint("class_accuracy", cfg.min_accuracy - scores["class_accuracy"])
        feasible = scores["class_accuracy"] >= cfg.min_accuracy
        log.info(f"trial {len(scored(study)) + 1}/{cfg.n_trials} (#{trial.number}): {describe(setting)}: "
                 f"FID {scores['fid']:.2f} (floor {scores['fid_floor']:.2f}), accuracy "
                 f"{scores['class_accuracy']:.3f}, {nfe} NFE, {'feasible' if feasible else 'infeasible'}, "
                 f"{scores['sampling_seconds']:.0f} s")
        return scores["fid"]

    missing = cfg.n_trials - len(scored(study))
    log.info(f"study {study.study_name}: {len(scored(study))} scored trials so far, {max(missing, 0)} to go")
    if missing <= 0:
        return
    # Pruned trials cost no sampling: the run stops at n_trials scored ones, or after ten times as many draws.
    study.optimize(objective, n_trials=10 * missing,
                   callbacks=[MaxTrialsCallback(cfg.n_trials, states=(TrialState.COMPLETE,))])
    if len(scored(study)) < cfg.n_trials:
        log.warning(f"{10 * missing} draws gave {len(scored(study))} scored trials of n_trials={cfg.n_trials}: most "
                    f"settings of the search space cost more than max_nfe={cfg.max_nfe} (narrow search.steps)")


def finalists(study, cfg: DictConfig) -> list:
    """The best final.finalists feasible trials, then the feasible incumbents among the rest; of trials that draw the
    same digits (prepared's `effect`) only the first, which would be re-scored to the same numbers."""
    ok = sorted((t for t in scored(study) if t.user_attrs["class_accuracy"] >= cfg.min_accuracy
                 and t.user_attrs["nfe"] <= cfg.max_nfe), key=lambda t: t.value)
    distinct, seen = [], set()
    for t in ok:
        effect = t.user_attrs.get("effect", t.number)  # a trial of an older study: its own
        if effect not in seen:
            seen.add(effect)
            distinct.append(t)
    best = distinct[: cfg.final.finalists]
    return best + [t for t in distinct[cfg.final.finalists:] if "incumbent" in t.user_attrs]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def rescore(cfg: DictConfig, study, trial, module, scorer) -> dict:
    """A finalist at final.n over final.seeds, both judges: mean and standard deviation of each score. Kept in the
    study (its user attributes), so that a rerun does not sample it again."""
    key = f"final {trial.number} n={cfg.final.n} seeds={list(cfg.final.seeds)} judges={sorted(scorer.by_judge)}"
    if key in study.user_attrs:
        return study.user_attrs[key]
    setting = setting_of(trial.params)
    runs = []
    for seed in cfg.final.seeds:
        sampler, nfe, _ = prepared(module, setting)
        with torch.inference_mode():
            runs.append(score_sampler(module, sampler, scorer, cfg.final.n, setting["guidance"], seed, cfg.batch_size,
                                      setting["guidance_interval"]))
    row = {"trial": trial.number, "incumbent": trial.user_attrs.get("incumbent"), "nfe": nfe,
           "seconds": sum(r["sampling_seconds"] for r in runs)}
    for name in [k for k in runs[0] if k.startswith(("fid", "class_accuracy"))]:
        row[name], row[f"{name}_std"] = mean_std([r[name] for r in runs])
    log.info(f"finalist #{trial.number}: {describe(setting)}: FID {row['fid']:.2f} +- {row['fid_std']:.2f} "
             f"(floor {row['fid_floor']:.2f}), accuracy {row['class_accuracy']:.3f} +- {row['class_accuracy_std']:.3f}"
             f", {nfe} NFE")
    study.set_user_attr(key, row)
    return row


def write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def pm(row: dict, key: str) -> str:
    return f"{row[key]:.2f} ± {row[key + '_std']:.2f}" if key in row else ""


def write_report(path: Path, cfg: DictConfig, study, rows: list[dict], winner: dict | None) -> None:
    judge2 = any("fid_judge2" in r for r in rows)
    head = ["trial", "setting", "NFE", "FID judge 1", *(["FID judge 2"] if judge2 else []), "class accuracy"]
    lines = [f"# ddpm-tune: {cfg.ckpt}", "",
             f"{len(scored(study))} scored trials ({len(study.trials)} drawn) at n = {cfg.n}, sampling seed "
             f"{cfg.seed}; constraints: class accuracy >= {cfg.min_accuracy}, <= {cfg.max_nfe} NFE. The best "
             f"{cfg.final.finalists} feasible trials, and the feasible incumbents, re-scored at n = {cfg.final.n} "
             "over sampling seeds "
             f"{', '.join(map(str, cfg.final.seeds))} (mean ± standard deviation); floor at that n: "
             + (f"FID {rows[0]['fid_floor']:.2f} (judge 1)" if rows else "none")
             + (f", {rows[0]['fid_floor_judge2']:.2f} (judge 2)" if judge2 else "") + ".", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        setting = describe(setting_of(study.trials[r["trial"]].params))
        if r.get("incumbent"):
            setting += f" ({r['incumbent']})"
        cells = [str(r["trial"]), setting, str(r["nfe"]), pm(r, "fid"), *([pm(r, "fid_judge2")] if judge2 else []),
                 f"{r['class_accuracy']:.3f} ± {r['class_accuracy_std']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Winner: trial {winner['trial']}, written to {tuned_path(cfg.ckpt)}." if winner else
              f"No finalist held class accuracy >= {cfg.min_accuracy} at n = {cfg.final.n}: no {TUNED} written."]
    write_atomic(path, "\n".join(lines) + "\n")


def write_setting(path: Path, cfg: DictConfig, setting: dict, row: dict) -> None:
    judge2 = f"; judge 2: {pm(row, 'fid_judge2')} (floor {row['fid_floor_judge2']:.2f})" if "fid_judge2" in row else ""
    header = [f"ddpm-tune's setting for {Path(cfg.ckpt).name}, {datetime.date.today()}: {describe(setting)}, "
              f"{row['nfe']} NFE per image.",
              f"At n = {cfg.final.n} over sampling seeds {', '.join(map(str, cfg.final.seeds))}: "
              f"FID {pm(row, 'fid')} (judge 1, floor {row['fid_floor']:.2f}){judge2}; class accuracy "
              f"{row['class_accuracy']:.3f} ± {row['class_accuracy_std']:.3f}.",
              f"sample and evaluate use it for this run's checkpoints (a key on the command line still wins); "
              f"study and report: {path.parent / 'tune'}."]
    write_atomic(path, "".join(f"# {line}\n" for line in header) + OmegaConf.to_yaml(OmegaConf.create(setting)))


def reused_seed(cfg: DictConfig) -> str | None:
    """Why a re-scoring at the trials' own seed flatters its finalists, or None: at that seed it draws the trials'
    digits again (the same initial noise; the very same digits where n is a multiple of batch_size), the draws that
    chose the finalists, so part of their "independent" score is the score that selected them."""
    if cfg.seed not in cfg.final.seeds:
        return None
    return (f"final.seeds={show(cfg.final.seeds)} holds the trials' seed={cfg.seed}: at that seed the re-scoring "
            f"starts from the noise of the draws that chose the finalists, which favours them; use seeds apart from it "
            f"(the default, [1,2,3])")


def tune(cfg: DictConfig) -> dict | None:
    """Run (or continue) the study, re-score its best, write the winner; returns the winner's scores."""
    check_options(cfg)
    if (why := reused_seed(cfg)) is not None:
        log.warning(why)
    device = resolve_device(cfg.device)
    module = load_module(cfg.ckpt, ema=cfg.ema).to(device)
    if not module.conditional:
        raise ConfigError(f"ckpt={cfg.ckpt} is unconditional: ddpm-tune searches guidance and scores class accuracy, "
                          "which need a class-conditional model")
    T = module.diffusion.timesteps
    integer("search.steps", cfg.search.steps[1], high=T, hint=f" (the checkpoint's schedule has T = {T})")
    second = cfg.classifier2 if cfg.classifier2 and Path(cfg.classifier2).expanduser().is_file() else None
    scorer = build_scorer(cfg.data, cfg.classifier, second, device=device)
    scorer.check_n("n", cfg.n)
    scorer.check_n("final.n", cfg.final.n)
    folder = tuned_path(cfg.ckpt).parent / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    with heartbeats_outside_optimize():
        study, url = open_study(cfg, folder)
        enqueue_incumbents(study, incumbents(cfg, module))
        log.info(f"study {url}; to watch it: optuna-dashboard {url}")
        run_study(cfg, study, module, scorer)
    chosen = finalists(study, cfg)
    log.info(f"re-scoring {len(chosen)} feasible trials (the best, and the incumbents) at n = {cfg.final.n}, seeds "
             f"{list(cfg.final.seeds)}")
    rows = [rescore(cfg, study, trial, module, scorer) for trial in chosen]
    good = [r for r in rows if r["class_accuracy"] >= cfg.min_accuracy]
    winner = min(good, key=lambda r: r["fid"]) if good else None
    write_report(folder / "report.md", cfg, study, rows, winner)
    log.info(f"wrote {folder / 'report.md'}")
    if winner is None:
        log.warning(f"no finalist held class accuracy >= {cfg.min_accuracy} at n = {cfg.final.n}: no {TUNED} written "
                    "(more trials: n_trials=..., or a lower min_accuracy)")
        return None
    setting = setting_of(study.trials[winner["trial"]].params)
    write_setting(tuned_path(cfg.ckpt), cfg, setting, winner)
    log.info(f"wrote {tuned_path(cfg.ckpt)}: {describe(setting)}")
    return {**winner, "setting": setting}


def main() -> None:
    """The console script (pyproject.toml) and `python -m ddpm.commands.tune`: without Optuna, one line."""
    exit_on_user_error(need_optuna)()
    run_app("tune", tune)


if __name__ == "__main__":
    main()
