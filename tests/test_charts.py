"""Charts: bars on a terminal (rich), numbers only on pipes, with NO_COLOR and in JSON."""

from __future__ import annotations

import io
import json
import typing as t

import msgspec
import pytest

from sesstool.cli.main import main
from sesstool.render.charts import bar
from sesstool.render.env import Environment


def run(args: list[str], *, tty: bool, no_color: bool = False) -> tuple[int, str]:
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(),
                      stdout_isatty=tty, stderr_isatty=False, no_color=no_color)
    code = main(args, env)
    return code, t.cast(io.StringIO, env.stdout).getvalue()


@pytest.fixture
def planted(redis_url: str, redis_client: t.Any) -> str:
    pipe = redis_client.pipeline()
    for n in range(40):
        value = msgspec.msgpack.encode({"_user_id": n % 4, "blob": "x" * (n * 40)})
        pipe.set(f"session:s{n}".encode(), value, ex=None if n < 5 else 3600 * (n + 1))
    pipe.execute()
    redis_client.set(b"session:old", b"\x80\x04}\x94\x8c\x01a\x94K\x01s.")  # pickled {"a": 1}
    return redis_url


def test_bar_lengths() -> None:
    assert bar(10, 10, width=4) == "████"
    assert bar(5, 10, width=4) == "██"
    assert bar(1, 1000, width=4) == "▏"  # never invisible when not zero
    assert bar(0, 10) == "" and bar(3, 0) == ""


def test_stats_draws_serializers_size_and_ttl_on_a_terminal(planted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out = run(["stats", "--store", planted], tty=True)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["sessions", "41"]
    for title in ("serializers", "size", "ttl"):
        assert any(title in line and "█" not in line for line in lines[6:]), title
    assert "█" in out and "\x1b[" in out  # rich, in colour
    assert "never expires" in out and "pickle" in out


@pytest.mark.parametrize("args", [["stats"], ["stats", "--by", "_user_id"], ["stats", "--fields"]])
def test_no_bars_on_pipes_with_no_color_or_in_json(planted: str, args: list[str]) -> None:
    _, piped = run([*args, "--store", planted], tty=False)
    _, no_color = run([*args, "--store", planted], tty=True, no_color=True)
    _, as_json = run([*args, "--store", planted, "--format", "json"], tty=True)
    for out in (piped, no_color, as_json):
        assert "█" not in out and "\x1b" not in out
    assert piped == no_color
    json.loads(as_json)


def test_ranked_bars_for_by_and_fields(planted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, by = run(["stats", "--store", planted, "--by", "_user_id"], tty=True)
    rows = [line for line in by.splitlines() if "█" in line]
    assert len(rows) == 4  # the four users, each with its bar
    assert "sessions per value of _user_id" in by and "1 without _user_id" in by
    _, fields = run(["stats", "--store", planted, "--fields"], tty=True)
    bars = [line for line in fields.splitlines() if "█" in line or "▏" in line]
    assert "blob" in bars[0]  # the biggest field first, with the longest bar
    assert bars[0].count("█") > bars[1].count("█")
