"""The README and docs/ stay true to the repository: every relative link and image resolves, the README stays a
five-minute page, and every command of its quick start composes against conf/ (Hydra's compose API, no run)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
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
           "bench": "bench", "judge": "classifier"}


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
    assert [name for name, _ in quick_start_commands()][:3] == ["train", "train", "sample"]  # debug, quickstart


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
