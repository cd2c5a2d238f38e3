"""The import graph, read from the source with `ast`: the subpackages of ddpm are layers that import downwards only
(the order of ddpm/__init__.py), the library never imports a command, a command takes nothing from another command
and only `run_app` from the cli, and scripts/ and docs/ use the library, not the commands."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A module may import its own layer and the ones below.
LAYERS = {
    "ddpm.errors": 0, "ddpm.validation": 0, "ddpm.progress": 0, "ddpm.files": 0,
    "ddpm.diffusion": 1,
    "ddpm.sampling": 2,
    "ddpm.models": 3, "ddpm.data": 3,
    "ddpm.training": 4,
    "ddpm.evaluation": 5,
    "ddpm.cli": 6,
    "ddpm.commands": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    """The entry of LAYERS that holds `module` (a package or a module at the top of ddpm)."""
    for name in LAYERS:
        if module == name or module.startswith(name + "."):
            return name
    return None


def project_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of a ddpm module in the file, also those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "ddpm"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ddpm":
            names = [alias.name for alias in node.names]
            # `from ddpm.evaluation import plots` imports the module ddpm.evaluation.plots
            package = ROOT / node.module.replace(".", "/")
            submodules = [f"{node.module}.{n}" for n in names if (package / f"{n}.py").is_file()]
            found += [(m, []) for m in submodules] or [(node.module, names)]
    return found


SOURCES = sorted((ROOT / "ddpm").rglob("*.py"))
LIBRARY = [p for p in SOURCES if layer(module_name(p)) not in (None, "ddpm.commands")]
COMMANDS = [p for p in SOURCES if layer(module_name(p)) == "ddpm.commands"]
SCRIPTS = sorted((ROOT / "scripts").rglob("*.py")) + sorted((ROOT / "docs").rglob("*.py"))


def test_every_module_has_a_place():
    homeless = {module_name(p) for p in SOURCES} - {"ddpm"}
    assert not {m for m in homeless if layer(m) is None}, "a new module belongs in one of the LAYERS' packages"


@pytest.mark.parametrize("package", [name for name in LAYERS if (ROOT / name.replace(".", "/")).is_dir()])
def test_each_package_says_what_lives_there(package):
    init = ROOT / package.replace(".", "/") / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), (
        f"{init} needs a docstring: what lives there, what it imports")


@pytest.mark.parametrize("path", LIBRARY, ids=module_name)
def test_library_imports_downwards_and_no_command(path):
    here = layer(module_name(path))
    for module, _ in project_imports(path):
        there = layer(module)
        assert there is not None, f"{module_name(path)} imports {module}, which has no layer"
        assert LAYERS[there] <= LAYERS[here], (
            f"{module_name(path)} ({here}, layer {LAYERS[here]}) imports {module} ({there}, layer {LAYERS[there]})"
        )


@pytest.mark.parametrize("path", COMMANDS, ids=module_name)
def test_commands_import_no_other_command(path):
    here = module_name(path)
    for module, names in project_imports(path):
        assert layer(module) != "ddpm.commands" or module == here, f"the command {here} imports the command {module}"
        if layer(module) == "ddpm.cli" and here != "ddpm.commands":
            assert module != "ddpm.cli.app" or names == ["run_app"], (
                f"{here} takes {names} from ddpm.cli.app: shared helpers belong in ddpm.cli.runtime"
            )


@pytest.mark.parametrize("path", [ROOT / "train.py", ROOT / "sample.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_entry_points_only_run_their_command(path):
    assert [m for m, _ in project_imports(path)] == [f"ddpm.commands.{module_name(path)}"]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_and_docs_use_the_library_not_the_commands(path):
    for module, _ in project_imports(path):
        assert layer(module) not in (None, "ddpm.commands"), f"{path.relative_to(ROOT)} imports {module}"


def test_the_check_sees_a_violation(tmp_path):
    """The reader itself: an import inside a function and a `from package import module` are both found, and a
    module of a higher layer is placed there."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ddpm.commands.train import train\nfrom ddpm.evaluation import plots, x\n")
    found = sorted(m for m, _ in project_imports(source))
    assert found == ["ddpm.commands.train", "ddpm.evaluation.plots"]
    assert LAYERS[layer("ddpm.evaluation.plots")] > LAYERS[layer("ddpm.sampling.samplers")]
