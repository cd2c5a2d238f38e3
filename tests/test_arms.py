"""A compare report's arms: the runs whose saved configs differ only in the seed and in where they read and wrote
are seeds of one arm, and pooled; any other setting (model, a schedule's tau, the learning rate) makes an arm of its
own, named by what sets it apart."""

import torch
from conftest import CONF, compose_train
from omegaconf import OmegaConf

from ddpm.evaluation.results import summarise
from ddpm.evaluation.runs import NAMED_GROUPS, describe, label_arms

OPTIONS = {group: {p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in (CONF / group).glob("*.yaml")}
           for group in NAMED_GROUPS}


def saved_run(folder, overrides):
    """A run folder as train.py leaves it: the composed config, unresolved, in .hydra/config.yaml."""
    cfg = compose_train(folder, overrides)
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    return folder


def test_runs_that_differ_in_model_tau_or_lr_are_arms_of_their_own_and_seeds_are_pooled(tmp_path):
    runs = {
        # seeds of one arm: also a data folder and a resumed folder of their own, which change nothing trained
        "a0": [], "a1": ["seed=1", "data.root=/elsewhere", f"resume={tmp_path / 'a1'}"],
        "base0": ["model=base"], "base1": ["model=base", "seed=1"],
        "tau": ["schedule=sigmoid", "schedule.tau=0.5"], "sigmoid": ["schedule=sigmoid"],
        "lr": ["module.lr=0.002"],
    }
    described = [describe(saved_run(tmp_path / name, overrides)) for name, overrides in runs.items()]
    arms = label_arms(described, OPTIONS)
    by_run = {run.name: run.arm for run in described}
    assert by_run == {
        "a0": "linear, model=small, module.lr=0.001", "a1": "linear, model=small, module.lr=0.001",
        "base0": "linear, model=base, module.lr=0.001", "base1": "linear, model=base, module.lr=0.001",
        "tau": "sigmoid, schedule.tau=0.5, model=small, module.lr=0.001",
        "sigmoid": "sigmoid, model=small, module.lr=0.001",
        "lr": "linear, model=small, module.lr=0.002",
    }
    assert len(arms) == 5 and [r.seed for r in arms["linear, model=base, module.lr=0.001"]] == [0, 1]
    # The summary over seeds pools exactly the runs of an arm.
    rows = [{"run": r.name, "arm": r.arm, "train_step": 6, "sampler": "ddim", "steps": 5, "guidance": 2.0,
             "guidance_interval": "", "n": 20, "fid": 10.0 + r.seed} for r in described]
    seeds = {s["arm"]: (s["seeds"], s["fid"]) for s in summarise(rows)}
    assert seeds["linear, model=small, module.lr=0.001"] == (2, 10.5)
    assert seeds["sigmoid, model=small, module.lr=0.001"] == (1, 10.0)


def test_an_arm_is_named_by_the_one_setting_that_sets_it_apart(tmp_path):
    described = [describe(saved_run(tmp_path / name, overrides)) for name, overrides in
                 [("linear", []), ("cosine", ["schedule=cosine"]), ("cosine1", ["schedule=cosine", "seed=1"])]]
    assert sorted(label_arms(described, OPTIONS)) == ["cosine", "linear"]
    described.append(describe(saved_run(tmp_path / "short", ["trainer.max_steps=1100"])))
    assert sorted(label_arms(described, OPTIONS)) == [
        "cosine, trainer.max_steps=10000", "linear, trainer.max_steps=10000", "linear, trainer.max_steps=1100"]
    alone = [describe(saved_run(tmp_path / "alone" / name, ["model=base", f"seed={name}"])) for name in "012"]
    assert list(label_arms(alone, OPTIONS)) == ["linear"]  # one arm: the schedule alone names it


def test_runs_without_a_saved_config_are_told_apart_by_their_checkpoints(tmp_path):
    """The checkpoint's hyper-parameters stand in for a missing config: model, schedule and module settings."""
    def checkpoint_only(name, overrides):
        cfg = OmegaConf.to_container(compose_train(tmp_path / name, overrides), resolve=True)
        hparams = {k: v for k, v in cfg["module"].items() if k != "_target_"}
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        torch.save({"state_dict": {}, "hyper_parameters": hparams}, tmp_path / name / "checkpoints" / "last.ckpt")
        return describe(tmp_path / name)

    described = [checkpoint_only("a", []), checkpoint_only("b", ["seed=3"]), checkpoint_only("c", ["model=tiny"])]
    label_arms(described, OPTIONS)
    assert [run.arm for run in described] == ["linear, model=small", "linear, model=small", "linear, model=tiny"]
