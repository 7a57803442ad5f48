"""Checks a user notices indirectly: fast start (no heavy imports), clean types and lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("redis", "rich", "flask", "pymemcache", "werkzeug", "hiredis")


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


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [ruff, "check", "sesstool", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "sesstool"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:]
