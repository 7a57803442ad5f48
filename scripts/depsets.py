"""Helpers for the dependency sets of scripts/test (lock, floor, newest).

``tools LOCK FLOORS`` prints constraint lines pinning the test tools to their
locked versions; ``report FLOORS`` prints the installed version of each runtime
dependency, so a run's log says what it tested.

The floor and newest dependency sets (scripts/test --deps floor|newest) vary
sesstool's runtime dependencies only: pytest, hypothesis, Flask, Flask-Session
and the rest of the test extra stay at the versions in requirements-dev.lock, so
a difference between the sets is a difference in a runtime dependency.

Usage: python scripts/depsets.py tools requirements-dev.lock constraints-floor.txt
       python scripts/depsets.py report constraints-floor.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(;[^\\]*)?")


def runtime_names(floor_file: Path) -> set[str]:
    names = set()
    for line in floor_file.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            names.add(_normal(match.group(1)))
    return names


def tool_pins(lock: Path, runtime: set[str]) -> list[str]:
    """The lock's pins of packages that sesstool's extras ask for directly, runtime ones left out."""
    pins: list[str] = []
    current: str | None = None
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            current = f"{name}=={version}{' ' + marker.strip() if marker else ''}"
            if _normal(name) in runtime:
                current = None
            continue
        if current and "sesstool (pyproject.toml)" in line:
            pins.append(current)
            current = None
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def report(runtime: set[str]) -> str:
    from importlib import metadata

    installed = {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return " ".join(f"{name}=={installed.get(name, 'missing')}" for name in sorted(runtime))


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "tools":
        print("\n".join(tool_pins(Path(paths[0]), runtime_names(Path(paths[1])))))
    elif command == "report":
        print(f"python {sys.version.split()[0]}: {report(runtime_names(Path(paths[0])))}")
    else:
        sys.exit(f"usage: {sys.argv[0]} tools LOCK FLOORS | report FLOORS")
