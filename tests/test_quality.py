"""Fast start: light commands import no heavy module.

Lint and types are not checked here: scripts/test runs ruff and strict mypy as
their own steps, on the locked toolchain, before pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("redis", "rich", "flask", "pymemcache", "werkzeug", "hiredis", "sqlalchemy", "psycopg")


def imported_modules(*args: str) -> set[str]:
    code = (
        "import sys, runpy; sys.argv = ['sesstool', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('sesstool', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    return set(result.stderr.strip().splitlines()[-1].split())


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["decode", "eyJ1c2VyX2lkIjo0Mn0.awGpuA.m_RG_QDk5ZNFL6kaKd3zf-72EGI"],
        ["sign", '{"a": 1}', "--secret-key", "k"],
        ["list", "--help"],
        ["completion", "bash"],
    ],
)
def test_light_commands_import_no_heavy_module(args: list[str]) -> None:
    modules = imported_modules(*args)
    assert "sesstool.cli.main" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == []


# --- layers: data flows one way ------------------------------------------------------------

#: Each package (or top-level module) and its rank: a module imports only from lower
#: ranks and from its own package. Equal ranks are siblings and must not import each
#: other (cookies and stores know nothing of each other; neither do app and render).
LAYERS = {
    "errors": 0,
    "__init__": 1, "durations": 1, "redact": 1, "deadline": 1,
    "codecs": 2,
    "cookies": 3, "stores": 3,
    "ops": 4,
    "app": 5, "render": 5,
    "cli": 6,
    "__main__": 7,
}  # fmt: skip


def _is_module(name: str) -> bool:
    return (ROOT / "sesstool" / f"{name}.py").exists() or (ROOT / "sesstool" / name).is_dir()


def _runtime_imports(path: Path) -> set[str]:
    """The sesstool modules ``path`` imports at run time (``TYPE_CHECKING`` blocks left out)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for child in block.body
        for node in ast.walk(child)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sesstool":
            if node.module != "sesstool":
                found.add(node.module)
            else:  # ``from sesstool import redact`` names a module; ``__version__`` the package
                found.update(f"sesstool.{a.name}" if _is_module(a.name) else "sesstool" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sesstool")
    return found


def test_packages_import_only_the_layers_below_them() -> None:
    package = ROOT / "sesstool"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        layer = parts[0]
        assert layer in LAYERS, f"{path}: a new package needs its place in LAYERS"
        for module in _runtime_imports(path):
            target = module.split(".")[1] if "." in module else "__init__"
            if target == layer:
                continue
            assert target in LAYERS, f"{path} imports {module}, which has no place in LAYERS"
            if LAYERS[target] >= LAYERS[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)
