"""The README and docs/ stay true to the repository: every relative link and image resolves, the README stays a
five-minute page, every command of its quick start composes against conf/ (Hydra's compose API, no run), and every
number that scripts/docs_numbers.py generates from docs/compare/*.csv is what the committed rows give."""

import csv
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import docs_numbers  # noqa: E402 (a script, found through the path above)

CONF = ROOT / "conf"
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# [text](target) and ![alt](target); a target ends at whitespace (an optional "title" follows) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.S)
# Each command's config in conf/ (ddpm/commands/<name>.py: run_app(<config>, ...)).
CONFIGS = {"train": "train", "sample": "sample", "evaluate": "evaluate", "compare": "compare", "nll": "nll",
           "bench": "bench", "judge": "classifier", "export": "export", "tune": "tune"}


def prose(text: str) -> str:
    """The text as rendered: without code blocks and inline code, where a bracket is code, not a link, and without
    HTML comments."""
    return INLINE_CODE.sub("", FENCE.sub("", COMMENT.sub("", text)))


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]


def test_the_link_reader_sees_links_and_images_but_not_code():
    text = ("[a](x.md) ![b](img/y.png) [c](https://example.org) `[d](in_code.md)` <!-- [f](comment.md) -->\n"
            "```\n[e](fenced.md)\n```\n")
    links = [t for t in LINK.findall(prose(text)) if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]
    assert links == ["x.md", "img/y.png"]
    assert {"docs/compare/README.md", "docs/compare/b1100_fid_vs_steps.png"} <= set(relative_links(README))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_is_a_five_minute_page():
    assert len(README.read_bytes()) <= 12_000


def quick_start_commands() -> list[tuple[str, list[str]]]:
    """(config name, overrides) of each command of the README's quick-start block, in order."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] in (["python", "train.py"], ["python", "sample.py"]):
            name, overrides = words[1].removesuffix(".py"), words[2:]
        elif words and words[0].startswith("ddpm-"):
            name, overrides = words[0].removeprefix("ddpm-"), words[1:]
        elif words[:2] == ["python", "-m"] and words[2].startswith("ddpm."):
            name, overrides = words[2].rsplit(".", 1)[1], words[3:]
        else:
            continue  # the shell's, pip's and pytest's lines
        commands.append((CONFIGS[name], overrides))
    return commands


def test_quick_start_has_the_train_and_sample_commands():
    # debug, the shipped model, the quickstart, its model
    assert [name for name, _ in quick_start_commands()][:4] == ["train", "sample", "train", "sample"]


@pytest.mark.parametrize("config_name, overrides", quick_start_commands(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_quick_start_command_composes(config_name, overrides):
    assert "-m" not in overrides, "a sweep: compose its jobs one by one"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    for override in overrides:
        key, value = override.split("=", 1)
        if (CONF / key).is_dir():  # a group option: the yaml it names
            assert (CONF / key / f"{value}.yaml").exists()
        else:  # the value as the command line gives it, a list included
            found = OmegaConf.select(cfg, key)
            assert (OmegaConf.to_container(found) if OmegaConf.is_config(found) else found) == yaml.safe_load(value)


def test_every_console_script_has_its_config():
    scripts = re.findall(r'^ddpm-(\w+) = "ddpm\.commands\.(\w+):main"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert scripts and all(name == module for name, module in scripts)
    assert {name for name, _ in scripts} == set(CONFIGS)
    assert all((CONF / f"{config}.yaml").exists() for config in CONFIGS.values())


def test_generated_numbers_are_those_of_the_committed_rows():
    """tables.md and every block between `<!-- generated: NAME -->` and `<!-- end: NAME -->` as the committed csv
    files make them: `python scripts/docs_numbers.py` rewrites what this names."""
    assert docs_numbers.stale() == []


def test_a_changed_row_changes_the_generated_text():
    """The check above can fail: one FID of the schedule study changed in memory changes the README's table."""
    rows = docs_numbers.load()
    row = docs_numbers.one(rows, re.compile("linear_eps_seed0"), train_step=1100, sampler="ddim", steps=50,
                           guidance=2.0)
    row["fid"] += 3.0
    assert {"README.md", "docs/compare/tables.md"} <= set(docs_numbers.stale(rows))


def test_a_block_the_generator_does_not_know_is_refused():
    study = docs_numbers.Study([], [])
    with pytest.raises(LookupError, match="blocks"):
        docs_numbers.render("<!-- generated: nothing -->\nx\n<!-- end: nothing -->\n", {}, study)


def test_wrapped_lines_start_with_no_markdown_syntax():
    text = "- " + " ".join(["word"] * 25 + [">= -1", "- x", "2. y", "= 1.5", "# z", "| t"] * 8)
    lines = docs_numbers.wrap(text, "  ").splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) > 3
    assert not [line for line in lines[1:] if re.match(r"\s*([-+*>=<#|]|\d+[.)]\s)", line)]


def config_group_rows() -> list[tuple[list[str], str]]:
    """(groups, options cell) of each row of the README's table of config groups."""
    section = README.read_text().split("## Config groups", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 2:
            rows.append((re.findall(r"`([\w/]+)`", cells[0]), cells[1]))
    return rows


def test_the_config_table_names_every_option_of_each_group():
    rows = config_group_rows()
    assert {"plan", "sampler", "schedule"} <= {g for groups, _ in rows for g in groups}
    for groups, options in rows:
        named = set(re.findall(r"`(\w+)`", options))
        for group in groups:
            assert (CONF / group).is_dir(), group
            missing = {p.stem for p in (CONF / group).glob("*.yaml")} - named
            assert not missing, f"README's row for `{group}` lacks {sorted(missing)}"


def test_the_config_table_states_each_samplers_default_steps():
    options = dict((groups[0], cell) for groups, cell in config_group_rows())["sampler"]
    for name, steps in re.findall(r"`(\w+)` \((\d+)", options):
        assert yaml.safe_load((CONF / "sampler" / f"{name}.yaml").read_text())["steps"] == int(steps), name
    sampling_md = " ".join((ROOT / "docs" / "sampling.md").read_text().split())
    listed = re.search(r"\(`conf/sampler/\*\.yaml`: ([^)]*)\)", sampling_md).group(1)
    for label, name in (("DDIM", "ddim"), ("DPM-Solver++", "dpmpp"), ("SDE-DPM-Solver++", "sde_dpmpp")):
        steps = yaml.safe_load((CONF / "sampler" / f"{name}.yaml").read_text())["steps"]
        assert re.search(rf"(^|, ){re.escape(label)} {steps}(,|$)", listed), (label, steps, listed)


def test_the_plans_measuring_md_lists_are_those_of_conf():
    text = (ROOT / "docs" / "measuring.md").read_text()
    listed = re.search(r"`conf/plan/\*\.yaml`: ([^)]*)\)", text).group(1)
    assert set(re.findall(r"`(\w+)`", listed)) == {p.stem for p in (CONF / "plan").glob("*.yaml")}


def composed(config_name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def setting(node, sampler) -> tuple:
    """(sampler class, steps, w, interval) of a composed node that samples (sample.yaml, a callback, compare's grid)
    with its sampler's config."""
    steps = node.get("steps") or sampler.steps
    return sampler._target_.rsplit(".", 1)[-1], steps, node.guidance, OmegaConf.to_container(node.guidance_interval)


def test_sampling_md_names_the_settings_conf_composes():
    """docs/sampling.md, "Defaults": sample, evaluate, compare's grids and the training callbacks draw with
    SDE-DPM-Solver++-29 at w = 1.31 from log-SNR -0.83 up; experiment=quickstart's grids and FID callback with
    w = 1.5 in [-1, 1], experiment=quickstart_1100's with w = 1 in [-3, 3]."""
    default = ("SDEDPMSolverSampler", 29, 1.31, [-0.83, float("inf")])
    quick = ("SDEDPMSolverSampler", 25, 1.5, [-1, 1])
    quick_1100 = ("SDEDPMSolverSampler", 25, 1.0, [-3, 3])
    for name in ("sample", "evaluate"):
        cfg = composed(name)
        assert setting(cfg, cfg.sampler) == default, name
    grid = composed("compare").grid
    assert setting(grid, grid.sampler) == default
    for experiment, grids in ((None, default), ("quickstart", quick), ("quickstart_1100", quick_1100)):
        callbacks = composed("train", *([f"experiment={experiment}"] if experiment else [])).callbacks
        assert setting(callbacks.sample_grid, callbacks.sample_grid.sampler) == grids, experiment
        assert setting(callbacks.sample_metrics, callbacks.sample_metrics.sampler) == grids, experiment
    text = " ".join((ROOT / "docs" / "sampling.md").read_text().split())
    assert "w = 1.31 only at log-SNR >= -0.83" in text and "its training grids and FID callback draw with it" in text
    assert "`guidance=1 'guidance_interval=[-3,3]'`" in text and "guided only at log-SNR in [-1, 1]" in text


def test_the_pages_package_default_is_the_one_conf_holds():
    """The rows the generated pages call the package default (docs_numbers.DEFAULT_SETTING) are those scored at
    conf/sampling/default.yaml's setting: a new default in conf without new rows fails here."""
    from ddpm.sampling.guidance import check_interval, show_interval

    cfg = composed("sample")
    wanted = docs_numbers.DEFAULT_SETTING
    named = OmegaConf.load(ROOT / "conf" / "sampler" / f"{wanted['sampler']}.yaml")  # the rows' sampler name
    interval = show_interval(check_interval("guidance_interval", list(cfg.guidance_interval)))
    assert (cfg.sampler._target_, cfg.sampler.steps, cfg.guidance, interval) == (
        named._target_, wanted["steps"], wanted["guidance"], wanted["guidance_interval"])


def parameters(name: str) -> int:
    from hydra.utils import instantiate

    from ddpm.models.reference_unet import ReferenceUNet

    net = ReferenceUNet() if name == "reference" else instantiate(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    return sum(p.numel() for p in net.parameters())


def stated_sizes(text: str, pattern: str) -> dict[str, tuple[float, str]]:
    return {name: (float(value), unit) for name, value, unit in re.findall(pattern, text)}


def test_parameter_counts_are_those_of_the_models():
    """The README's config table and speed.md's tables state each model's size as the nets have it."""
    readme = dict((groups[0], cell) for groups, cell in config_group_rows())["model"]
    speed = (ROOT / "docs" / "speed.md").read_text()
    stated = [stated_sizes(readme, r"`(\w+)` \((\d+(?:\.\d+)?)(k|M)"),
              stated_sizes(speed, r"(?m)^\| (\w+)[^|]*\| (\d+(?:\.\d+)?)(k|M) \|")]
    assert {"tiny", "small", "base"} <= set(stated[0]) and {"small", "reference"} <= set(stated[1])
    for sizes in stated:
        for name, (value, unit) in sizes.items():
            count = parameters(name) / {"k": 1e3, "M": 1e6}[unit]
            digits = len(str(value).split(".")[1]) if value != int(value) else 0
            assert round(count, digits) == value, f"{name}: {count:.3f}{unit}, the docs say {value}{unit}"


def test_the_nll_files_are_the_bits_per_dim_of_results_csv():
    """docs/compare/nll/<run>_<last|milestone_step_N>.json hold what results.csv's bits_per_dim columns carry, and
    measuring.md quotes linear_eps_seed0_last.json as `ddpm-nll` prints it."""
    rows = docs_numbers.load()
    files = sorted((ROOT / "docs" / "compare" / "nll").glob("*.json"))
    assert len(files) == 12
    for path in files:
        run, checkpoint = re.fullmatch(r"(.+?)_(last|milestone_step_\d+)", path.stem).groups()
        nll = yaml.safe_load(path.read_text())
        matching = docs_numbers.pick(rows, re.compile(re.escape(run)), sampler="ddim", steps=50, guidance=2.0)
        step = max(r["train_step"] for r in matching) if checkpoint == "last" else int(checkpoint.rsplit("_", 1)[1])
        row = docs_numbers.one(matching, train_step=step)
        assert (row["bits_per_dim"], row["bits_per_dim_stderr"]) == pytest.approx((nll["bits_per_dim"], nll["stderr"]))
    quoted = yaml.safe_load((ROOT / "docs" / "compare" / "nll" / "linear_eps_seed0_last.json").read_text())
    measuring = (ROOT / "docs" / "measuring.md").read_text()
    assert f"`bits/dim: {quoted['bits_per_dim']:.4f} +- {quoted['stderr']:.4f}`" in measuring


def test_the_readme_quotes_the_nfe_of_the_rows():
    """The README's quick-start notes quote the NFE of the default setting (sampling_seeds.csv, the retrained
    10,000-step models' rows) and of the quickstart's own (its rows in results.csv)."""
    study = docs_numbers.Study(docs_numbers.load(), docs_numbers.load(docs_numbers.COMPARE / "sampling_seeds.csv"))
    default = docs_numbers.package_default(study)
    text = " ".join(README.read_text().split())
    assert f"({default['nfe']} network evaluations per image)" in text
    quick = docs_numbers.one(study.rows, re.compile(docs_numbers.NEW_QUICK_RUN), train_step=3000,
                             **docs_numbers.RECIPE_SETTING)
    assert f"`guidance=1.5 'guidance_interval=[-1,1]'` ({quick['nfe']:.0f} NFE)" in text


def test_the_readmes_settings_and_versions_are_those_of_conf_and_the_constraints():
    text = " ".join(README.read_text().split())
    constraints = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    pyproject = (ROOT / "pyproject.toml").read_text()
    python, torch = re.search(r'requires-python = ">=([\d.]+)"', pyproject), re.search(r'"torch>=([\d.]+)"', pyproject)
    assert f"Python >= {python.group(1)} and torch >= {torch.group(1)}" in text
    assert f"CI runs torch {constraints['torch']}" in text
    tiny, quick = composed("train", "debug=tiny"), composed("train", "experiment=quickstart")
    default = composed("train")
    assert f"`tiny`: {tiny.trainer.max_steps} steps of the tiny model on {tiny.data.train_size} images" in text
    assert f"# {tiny.trainer.max_steps} steps of a tiny model" in text
    assert f"# {quick.trainer.max_steps:,} steps" in text
    assert f"`module.cond_drop_prob` ({default.module.cond_drop_prob})" in text
    assert f"`schedule.timesteps` ({default.schedule.timesteps})" in text


def scaling_commands() -> list[list[str]]:
    """The arguments of every train.py command in docs/scaling.md's code blocks (continued lines joined; run
    through torchrun too), without -m."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "train.py" in words:
                commands.append([w for w in words[words.index("train.py") + 1 :] if w not in ("-m", "--multirun")])
    return commands


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """A sweep's first job and, for each swept value, the job that differs from it in that value alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ddpm.cli.sweep import values

    options = [values(o) for o in OverridesParser.create().parse_overrides(args)]
    first = [v[0] for v in options]
    return [first] + [first[:i] + [v] + first[i + 1 :] for i, vs in enumerate(options) for v in vs[1:]]


def test_scaling_page_has_its_commands():
    commands = [" ".join(c) for c in scaling_commands()]
    assert len(commands) >= 10
    for needed in ("hydra/launcher=submitit_slurm", "trainer.num_nodes=2", "hydra/launcher=ray", "trainer=ddp_spawn",
                   "hparams_search=optuna"):
        assert any(needed in c for c in commands), needed


@pytest.mark.parametrize("args", scaling_commands(), ids=" ".join)
def test_scaling_command_composes(args):
    """Every job of the command composes, its launcher's settings resolve (the SLURM job's shape from the trainer),
    and a SLURM job's tasks match the trainer's devices, as ddpm.cli.sweep checks before submitting."""
    import ddpm.cli.resolvers  # noqa: F401
    from ddpm.cli.sweep import SLURM_LAUNCHER, check_slurm_tasks

    for job in sweep_jobs(args):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=job, return_hydra_config=True)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        if launcher["_target_"] == SLURM_LAUNCHER:
            check_slurm_tasks(cfg)
            devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1  # auto: SLURM's one
            assert launcher["tasks_per_node"] == devices and launcher["nodes"] == cfg.trainer.num_nodes
            assert launcher["gpus_per_node"] == (devices if cfg.trainer.accelerator == "gpu" else 0)


def test_tuning_md_quotes_the_bf16_benchmark_it_links():
    """docs/tuning.md's bf16 lever: the throughputs of the committed benchmark json it links, and their ratio."""
    bench = json.loads((ROOT / "docs" / "tuning" / "bench_bf16_2026-12-05.json").read_text())["models"]["small"]
    bf16, fp32 = bench["bf16"]["train_images_per_s"], bench["channels_last"]["train_images_per_s"]
    text = " ".join((ROOT / "docs" / "tuning.md").read_text().split())
    assert f"{bf16:.0f} against {fp32:.0f} training images/s ({bf16 / fp32:.2f}x;" in text
    assert "(tuning/bench_bf16_2026-12-05.json)" in text


def test_seed_rows_adds_a_reports_rows_per_sampling_seed_and_replaces_a_remeasured_one(tmp_path, monkeypatch):
    """scripts/seed_rows.py: the rows of reports scored at sampling seeds S into sampling_seeds.csv, each tagged with
    its seed; the same point measured again at the same seed replaces the old row, other seeds and rows stay."""
    import seed_rows

    monkeypatch.setattr(seed_rows, "SEEDS", tmp_path / "seeds.csv")
    point = dict(run="r", schedule="cosine", train_step="10", sampler="ddim", steps="5", guidance="1.0",
                 guidance_interval="", nfe="10", n="100", fid_floor="2.0", fid_judge2="4.0", fid_floor_judge2="3.0",
                 kid="0.1", class_accuracy="0.9")
    for name, fid in [("a", "5.0"), ("b", "6.0"), ("c", "7.0")]:
        (tmp_path / name).mkdir()
        with open(tmp_path / name / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*point, "fid", "seed"])
            writer.writeheader()
            writer.writerow({**point, "fid": fid, "seed": "0"})
    seed_rows.main([f"0={tmp_path / 'a'}", f"1={tmp_path / 'b'}"])
    seed_rows.main([f"1={tmp_path / 'c'}"])
    rows = list(csv.DictReader(open(tmp_path / "seeds.csv")))
    assert sorted((r["sampling_seed"], r["fid"]) for r in rows) == [("0", "5.0"), ("1", "7.0")]
    with pytest.raises(SystemExit, match="usage"):
        seed_rows.main([str(tmp_path / "a")])
