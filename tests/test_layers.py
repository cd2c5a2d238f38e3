"""The import graph, read from the source with `ast`: layers import downwards only, the library never imports a
command, and a command takes nothing from another command but `run_app`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# schedules -> diffusion -> samplers -> networks -> LightningModule -> data -> judges, scoring, callbacks; a module
# may import its own layer and the ones below. Layer 0 holds what every layer may use.
LAYERS = {
    "ddpm.errors": 0, "ddpm.validation": 0, "ddpm.resolvers": 0, "ddpm.images": 0, "ddpm.plots": 0,
    "ddpm.runtime": 0,
    "ddpm.schedules": 1,
    "ddpm.diffusion": 2, "ddpm.likelihood": 2,
    "ddpm.samplers": 3, "ddpm.generate": 3,
    "ddpm.unet": 4, "ddpm.reference_unet": 4,
    "ddpm.module": 5, "ddpm.checkpoint": 5,
    "ddpm.data": 6,
    "ddpm.metrics.judge": 7, "ddpm.metrics.scores": 7, "ddpm.scoring": 7, "ddpm.callbacks": 7, "ddpm.sweep": 7,
}
COMMANDS = {"ddpm.cli", "ddpm.train", "ddpm.sample", "ddpm.evaluate", "ddpm.compare", "ddpm.bench", "ddpm.nll",
            "ddpm.metrics.classifier"}
PACKAGES = {"ddpm", "ddpm.metrics"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of a ddpm module in the file, also those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "ddpm"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ddpm":
            names = [alias.name for alias in node.names]
            # `from ddpm import plots` imports the module ddpm.plots
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in LAYERS.keys() | COMMANDS]
            found += [(m, []) for m in submodules] or [(node.module, names)]
    return found


SOURCES = sorted((ROOT / "ddpm").rglob("*.py"))
SCRIPTS = [ROOT / "train.py", ROOT / "sample.py"]


def test_every_module_has_a_place():
    names = {module_name(p) for p in SOURCES} - PACKAGES
    assert names == LAYERS.keys() | COMMANDS, "a new module needs a layer in LAYERS, or to be listed in COMMANDS"


@pytest.mark.parametrize("path", [p for p in SOURCES if module_name(p) in LAYERS], ids=module_name)
def test_library_imports_downwards_and_no_command(path):
    here = module_name(path)
    for module, _ in project_imports(path):
        assert module not in COMMANDS, f"{here} imports the command module {module}"
        assert module in LAYERS, f"{here} imports {module}, which has no layer"
        assert LAYERS[module] <= LAYERS[here], f"{here} (layer {LAYERS[here]}) imports {module} (layer {LAYERS[module]})"


@pytest.mark.parametrize("path", [p for p in SOURCES if module_name(p) in COMMANDS] + SCRIPTS,
                         ids=lambda p: p.name if p in SCRIPTS else module_name(p))
def test_commands_import_no_other_command(path):
    here = module_name(path)
    for module, names in project_imports(path):
        if module == "ddpm.cli" and here != "ddpm.cli":
            assert names == ["run_app"], f"{here} takes {names} from ddpm.cli: shared helpers belong in ddpm.runtime"
        elif path in SCRIPTS and module in COMMANDS:
            continue  # train.py and sample.py at the top wrap ddpm.train and ddpm.sample
        else:
            assert module not in COMMANDS, f"the command {here} imports the command {module}"


def test_the_check_sees_a_violation(tmp_path):
    """The reader itself: an import inside a function and a `from ddpm import x` are both found."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ddpm.train import train\nfrom ddpm import plots, compare\n")
    assert sorted(m for m, _ in project_imports(source)) == ["ddpm.compare", "ddpm.plots", "ddpm.train"]
