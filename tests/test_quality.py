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
HEAVY = ("redis", "rich", "flask", "pymemcache", "werkzeug", "hiredis", "sqlalchemy", "psycopg", "rdb")


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
