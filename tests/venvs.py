"""Virtualenvs with old Flask / Flask-Session / itsdangerous versions, made by the test setup.

Interop data for old versions is written by those versions themselves: each venv is
created once under ``.cache/venvs/`` (keyed by its requirements) and reused, and a
script run with its python writes sessions or cookies for the test to read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import IN_CI

CACHE = Path(os.environ.get("SESSTOOL_TEST_CACHE", Path(__file__).resolve().parent.parent / ".cache")) / "venvs"

# Known-good pins for the old stacks (Python 3.10+ compatible), every dependency
# pinned so that a new release elsewhere cannot change what the old apps write.
_COMMON = [
    "redis==5.0.8",
    "cachelib==0.13.0",
    "itsdangerous==2.2.0",
    "click==8.5.1",
    "jinja2==3.1.6",
    "markupsafe==3.0.4",
    "blinker==1.9.0",
]
FLASK_SESSION_05 = ["flask-session==0.5.0", "flask==2.3.3", "werkzeug==2.3.8", *_COMMON]
FLASK_SESSION_04 = ["flask-session==0.4.0", "flask==2.2.5", "werkzeug==2.2.3", *_COMMON]


def venv_python(name: str, requirements: list[str]) -> str:
    """The python of a venv holding ``requirements``, made on first use."""
    digest = hashlib.sha256(json.dumps(sorted(requirements)).encode()).hexdigest()[:12]
    root = CACHE / f"{name}-{digest}"
    python = root / "bin" / "python"
    marker = root / ".complete"
    if marker.exists():
        return str(python)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        output = getattr(e, "stderr", b"") or b""
        message = f"cannot build venv {name} with {requirements}: {output.decode(errors='replace')[-800:]}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    marker.write_text(json.dumps(requirements))
    return str(python)


def run_in_venv(python: str, script: str, *args: str, timeout: float = 120) -> str:
    """Run ``script`` (a path) with the venv's python; return its stdout."""
    result = subprocess.run([python, script, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout
