"""The module map of docs/architecture.md holds: no module imports a higher one.

Imports are read with ``ast`` (function-level imports included), so a lazy upward import is
caught too. Writing files (``files``, ``checkpoints``, ``plots``) must never load training.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxnets"

# A module imports only from lower levels (not its own). Keep in step with docs/architecture.md.
LEVELS = [
    ["errors", "files", "typing", "tblog"],
    ["augment", "download", "layers", "checkpoints", "plots"],
    ["data", "losses"],
    ["manual_grads"],
    ["gradcheck", "models", "broken_grads"],
    ["train"],
    ["presets", "distributed"],
    ["runs"],
    ["cli"],
    ["__main__"],
]
LEVEL = {name: i for i, names in enumerate(LEVELS) for name in names}
FILE_WRITERS = ("files", "checkpoints", "plots")


def jaxnets_imports(path: Path) -> set[str]:
    """The jaxnets modules ``path`` imports anywhere in its body (``from jaxnets import x`` counts x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "jaxnets":
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            elif node.module.startswith("jaxnets."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("jaxnets.")}
    return found


def test_every_module_has_a_level():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(LEVEL), f"add {sorted(modules - set(LEVEL))} to LEVELS and docs/architecture.md"


@pytest.mark.parametrize("module", sorted(LEVEL))
def test_no_module_imports_upward(module):
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py is not in this tree")
    upward = {m for m in jaxnets_imports(path) if m in LEVEL and LEVEL[m] >= LEVEL[module] and m != module}
    assert not upward, f"{module} imports {sorted(upward)} from its own level or above"


def test_the_checker_catches_an_upward_import(tmp_path):
    bad = tmp_path / "layers.py"
    bad.write_text("def f():\n    from jaxnets import train\n    return train\n")
    assert "train" in jaxnets_imports(bad)


@pytest.mark.parametrize("module", FILE_WRITERS)
def test_writing_files_does_not_import_training(module):
    code = f"import sys, jaxnets.{module}; print(sorted(m for m in sys.modules if m in ('jaxnets.train', 'optax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_package_lists_every_module():
    import jaxnets

    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "broken_grads"}
    assert modules <= set(jaxnets.__all__)
    for name in jaxnets.__all__:
        assert getattr(jaxnets, name).__name__ == f"jaxnets.{name}"
    assert (PACKAGE / "py.typed").exists()
