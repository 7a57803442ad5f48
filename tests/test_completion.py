"""Shell completion: the committed scripts, Click's completion of commands and options,
and session ids completed from a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import click
import pytest
from click.shell_completion import ShellComplete

from sesstool.cli.completion import MAX_IDS, complete_session_ids
from sesstool.cli.main import COMMANDS
from sesstool.cli.main import cli as sesstool_cli
from sesstool.cli.options import store_options
from tests.apps import AppDir, app_dir, redis_app
from tests.flaskapps import make_app, write_session
from tests.servers import DEPENDENCY_SET, free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"bash": "sesstool.bash", "zsh": "_sesstool", "fish": "sesstool.fish"}


@click.command("probe-show")
@store_options
@click.argument("sid", shell_complete=complete_session_ids)
def probe_show(sid: str, **_: t.Any) -> None:
    """A SID command wired like ``show``."""


@pytest.fixture(autouse=True)
def probe_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMMANDS, "probe-show", ("tests.test_completion", "probe_show"))
    for name in ("SESSTOOL_STORE", "SESSTOOL_PREFIX", "SESSTOOL_APP", "SESSTOOL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


def completions(args: list[str], incomplete: str) -> list[str]:
    complete = ShellComplete(sesstool_cli, {}, "sesstool", "_SESSTOOL_COMPLETE")
    return [item.value for item in complete.get_completions(args, incomplete)]


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_committed_scripts_match_the_command(cli, shell: str) -> None:
    result = cli("completion", shell)
    assert result.exit_code == 0, result.stderr
    assert "_SESSTOOL_COMPLETE" in result.stdout
    if DEPENDENCY_SET != "lock":
        # The committed copies are what the locked click writes; another click
        # writes its own script, which must still be one its shell accepts.
        checker = shutil.which(shell)
        if checker is not None:
            syntax = subprocess.run([checker, "-n"], input=result.stdout, capture_output=True, text=True, timeout=30)
            assert syntax.returncode == 0, syntax.stderr
        return
    committed = (ROOT / "completions" / SCRIPTS[shell]).read_text()
    assert result.stdout == committed, (
        f"completions/{SCRIPTS[shell]} is stale: run sesstool completion {shell} > completions/{SCRIPTS[shell]}"
    )


def test_unknown_shell_is_a_usage_error(cli) -> None:
    result = cli("completion", "tcsh")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "tcsh" in result.stderr


def test_commands_options_and_choices_complete() -> None:
    assert completions(["completion"], "") == ["bash", "zsh", "fish"]
    assert "replay" in completions([], "re")
    assert completions(["replay"], "--dr") == ["--dry-run"]
    assert completions(["replay", "--format"], "nd") == ["ndjson"]
    assert "--prefix" in completions(["probe-show"], "--pre")


def test_session_ids_complete_from_the_store(redis_url: str) -> None:
    app = make_app(redis_url=redis_url, prefix="cmp:")
    sids = sorted(write_session(app, {"n": n}).sid for n in range(3))
    args = ["probe-show", "--store", redis_url, "--prefix", "cmp:"]
    assert completions(args, "") == sids
    # The shell sends what was typed of the id; only ids starting with it come back.
    first = next(sid for sid in sids if not sid.startswith("-"))
    assert completions(args, first[:6]) == [sid for sid in sids if sid.startswith(first[:6])]
    # another prefix holds none of them
    assert completions(["probe-show", "--store", redis_url], "") == []


def test_ids_beginning_with_a_dash_complete_after_double_dash(redis_url: str, redis_client) -> None:
    redis_client.set("cmp:-Xy0123456789abcdef", b"\x80")
    redis_client.set("cmp:-Za0123456789abcdef", b"\x80")
    args = ["probe-show", "--store", redis_url, "--prefix", "cmp:"]
    assert completions([*args, "--"], "-X") == ["-Xy0123456789abcdef"]
    assert "-Xy0123456789abcdef" not in completions(args, "-X")  # before --, options complete


def test_store_and_prefix_come_from_the_environment(redis_url: str, monkeypatch) -> None:
    sid = write_session(make_app(redis_url=redis_url, prefix="envcmp:"), {"n": 1}).sid
    monkeypatch.setenv("SESSTOOL_STORE", redis_url)
    monkeypatch.setenv("SESSTOOL_PREFIX", "envcmp:")
    assert completions(["probe-show"], "") == [sid]


def test_at_most_a_hundred_ids(redis_url: str, redis_client) -> None:
    pipe = redis_client.pipeline()
    for n in range(MAX_IDS + 30):
        pipe.set(f"many:id{n:04d}", b"\x80")
    pipe.execute()
    found = completions(["probe-show", "--store", redis_url, "--prefix", "many:"], "")
    assert len(found) == MAX_IDS
    assert all(sid.startswith("id") for sid in found)


def test_session_ids_through_the_apps_config(redis_url: str, tmp_path, monkeypatch) -> None:
    with app_dir(tmp_path, monkeypatch) as apps:
        assert isinstance(apps, AppDir)
        sid = write_session(make_app(redis_url=redis_url, prefix="appcmp:"), {"n": 1}).sid
        apps.write("loud", redis_app(redis_url, prefix="appcmp:", extra="print('app says hello')"))
        assert completions(["probe-show", "--app", "loud:app"], "") == [sid]


def test_failures_give_nothing_and_print_nothing(capsys, tmp_path, monkeypatch) -> None:
    refused = f"redis://127.0.0.1:{free_port()}/0"
    assert completions(["probe-show", "--store", refused], "") == []
    assert completions(["probe-show", "--store", "nosuch://x"], "") == []
    with app_dir(tmp_path, monkeypatch):
        assert completions(["probe-show", "--app", "missing_app:app"], "") == []
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_a_store_that_never_answers_is_cut_off_quickly() -> None:
    # A socket that accepts connections (the kernel's backlog) but never replies.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        assert completions(["probe-show", "--store", url], "") == []
        assert time.monotonic() - started < 2.0


def test_round_trip_through_the_completion_protocol() -> None:
    """What a shell does on TAB: run sesstool with _SESSTOOL_COMPLETE set."""
    env = {
        **os.environ,
        "_SESSTOOL_COMPLETE": "bash_complete",
        "COMP_WORDS": "sesstool completion ",
        "COMP_CWORD": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "sesstool"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.splitlines() == ["plain,bash", "plain,zsh", "plain,fish"]


def test_a_store_whose_keys_hide_the_ids_offers_none(tmp_path: Path) -> None:
    from sesstool.stores import open_store

    store = open_store(f"file://{tmp_path}")
    store.set(b"session:abc", b"\x80\x05}\x94.", 600)
    store.close()
    assert completions(["probe-show", "--store", f"file://{tmp_path}"], "") == []
