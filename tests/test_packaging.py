"""The declared dependency ranges, the floor pins CI tests, and the lock agree.

A floor in pyproject.toml is a promise that sesstool works on that version; CI
keeps the promise by running the suite on constraints-floor.txt, so the two must
name the same versions. The lock must sit inside the declared ranges, or
contributors would test versions users can never get.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;([^\\]*))?")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(r.name): r for r in map(Requirement, project["dependencies"])}


def pins(path: Path) -> dict[str, list[tuple[Version, str | None]]]:
    found: dict[str, list[tuple[Version, str | None]]] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            found.setdefault(_normal(name), []).append((Version(version), marker and marker.strip()))
    return found


def test_every_runtime_dependency_declares_a_floor_and_ci_pins_exactly_it() -> None:
    floors = pins(ROOT / "constraints-floor.txt")
    for name, requirement in runtime_requirements().items():
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lower, f"{name} has no '>=' floor in pyproject.toml"
        assert name in floors, f"constraints-floor.txt does not pin {name}"
        pinned = [v for v, _ in floors[name]]
        assert pinned == [lower[0]], f"{name}: pyproject says >={lower[0]}, constraints-floor.txt pins {pinned}"
    assert set(floors) == set(runtime_requirements()), "constraints-floor.txt pins a package that is not a dependency"


def test_the_lock_sits_inside_the_declared_ranges() -> None:
    locked = pins(ROOT / "requirements-dev.lock")
    for name, requirement in runtime_requirements().items():
        assert name in locked, f"requirements-dev.lock has no pin for {name}: run scripts/lock"
        for version, marker in locked[name]:
            assert SpecifierSet(str(requirement.specifier)).contains(version), (
                f"the lock pins {name}=={version} ({marker or 'all Pythons'}), outside {requirement}: run scripts/lock"
            )


def test_the_lock_is_hash_checked() -> None:
    text = (ROOT / "requirements-dev.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    unhashed = [block.split()[0] for block in blocks if _PIN.match(block) and "--hash=sha256:" not in block]
    assert unhashed == []
