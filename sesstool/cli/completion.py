"""``completion bash|zsh|fish``, and completing session ids from the store.

The scripts are Click's own (:mod:`click.shell_completion`); each TAB press runs
``sesstool`` with ``_SESSTOOL_COMPLETE`` set, and Click answers before any command
runs. Options, choices and commands complete from the command definitions; SID
arguments complete from the store through :func:`complete_session_ids`.
"""

from __future__ import annotations

import contextlib
import io
import threading

import click

from sesstool.render.env import Environment

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "sesstool"
COMPLETE_VAR = "_SESSTOOL_COMPLETE"
#: how many ids a TAB press offers at most
MAX_IDS = 100
#: how long a TAB press may wait for the store, in seconds
TIMEOUT = 0.5


def completion_script(shell: str) -> str:
    """The completion script for ``shell``, as Click generates it for sesstool."""
    from click.shell_completion import get_completion_class

    from sesstool.cli.main import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice allows only known shells
        raise click.BadParameter(f"unsupported shell {shell!r}")
    return cls(cli, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_obj
def completion(env: Environment, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    Examples:
      eval "$(sesstool completion bash)"                # in ~/.bashrc
      sesstool completion zsh > "${fpath[1]}/_sesstool"
      sesstool completion fish > ~/.config/fish/completions/sesstool.fish
    """
    script = completion_script(shell)
    env.stdout.write(script if script.endswith("\n") else script + "\n")
    env.stdout.flush()


def complete_session_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Session ids under the prefix that start with ``incomplete``: a ``shell_complete``
    callback for SID arguments.

    The store comes from the options typed so far and the environment (``--store``,
    ``--prefix``, ``--app``, ``SESSTOOL_*``), as the command itself would resolve
    them. At most :data:`MAX_IDS` ids, waiting at most :data:`TIMEOUT` seconds for
    the store; any failure gives no ids, and nothing is ever printed (the shell
    reads stdout).
    """
    try:
        # Loading an --app runs the app's code, which may print; the shell must not see it.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from sesstool.cli.options import resolve_settings

            settings = resolve_settings(ctx)
            settings.warn = lambda message: None  # skipped keys are no news on TAB
            store = settings.open_store()
    except Exception:
        return []
    from sesstool.stores.capabilities import Capability

    if not store.supports(Capability.ENUMERABLE_IDS):  # its keys hide the ids (files named by a hash)
        with contextlib.suppress(Exception):
            store.close()
        return []
    prefix: str = settings.prefix
    found: list[str] = []

    def scan() -> None:
        try:
            for keys in store.scan_keys((prefix + incomplete).encode("utf-8"), batch=MAX_IDS):
                for key in keys:
                    sid = key.decode("utf-8", "replace")[len(prefix) :]
                    if sid.startswith(incomplete):
                        found.append(sid)
                if len(found) >= MAX_IDS:
                    return
        except Exception:  # an unreachable store offers nothing; never an error on TAB
            found.clear()
        finally:
            with contextlib.suppress(Exception):
                store.close()

    # A daemon thread bounds the whole scan, whatever timeouts the client has
    # (the app's own client may have none); a late answer is dropped.
    worker = threading.Thread(target=scan, name="sesstool-complete", daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    if worker.is_alive():
        return []
    return sorted(found[:MAX_IDS])
