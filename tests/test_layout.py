"""The house's layering, read from the source: ``ml/`` never imports Django or
``labeling``, and in ``labeling/`` only the bridge turns rows into arrays (numpy, torch,
scikit-learn, SciPy, ``ml``). Every import counts, inside functions and
``TYPE_CHECKING`` blocks too."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ARRAY_PACKAGES = {"numpy", "torch", "sklearn", "scipy", "ml"}
ALLOWED_ML = "ml.config"  # training configs checked without arrays or PyTorch
OUTSIDE_THE_RULE = ("labeling/bridge/", "labeling/crowd/", "labeling/management/")
"""The bridge itself; the simulated crowd (a test harness); management commands."""


def _imports(path):
    """``(line, dotted name, statement)`` of every absolute import in ``path``, in line
    order: ``import a.b`` gives ``a.b``, ``from a.b import c`` gives ``a.b.c``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ast.unparse(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}", ast.unparse(node)) for alias in node.names]
    return sorted(found)


def _python_files(folder):
    files = sorted(path for path in (ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def _relative(path):
    return path.relative_to(ROOT).as_posix()


def _array_imports(path):
    """``(line, statement)`` of each import of an array package in ``path``."""
    return sorted({
        (line, statement)
        for line, name, statement in _imports(path)
        if name.split(".")[0] in ARRAY_PACKAGES and not (name == ALLOWED_ML or name.startswith(ALLOWED_ML + "."))
    })


def _bound_by_the_bridge_rule(path):
    return not _relative(path).startswith(OUTSIDE_THE_RULE)


def test_ml_imports_neither_django_nor_labeling():
    found = sorted({
        f"{_relative(path)}:{line}: {statement}"
        for path in _python_files("ml")
        for line, name, statement in _imports(path)
        if name.split(".")[0] in {"django", "labeling"}
    })
    assert not found, "ml/ is a plain library tested on arrays:\n" + "\n".join(found)


def test_only_the_bridge_turns_rows_into_arrays():
    found = [
        f"{_relative(path)}:{line}: {statement}"
        for path in _python_files("labeling")
        if _bound_by_the_bridge_rule(path)
        for line, statement in _array_imports(path)
    ]
    assert not found, (
        "outside labeling/bridge/, labeling/ imports no numpy, torch, sklearn, scipy or ml "
        "(ml.config aside); call labeling.bridge instead:\n" + "\n".join(found)
    )


def test_the_scan_sees_imports_inside_functions_and_type_checking_blocks(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ml.inference import LoadedModel\n"
        "def f():\n    import numpy as np\n    from ml import config\n    from . import sibling\n"
    )
    assert _array_imports(source) == [(3, "from ml.inference import LoadedModel"), (5, "import numpy as np")]
