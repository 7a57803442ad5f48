"""The ``sesstool`` group, lazy command loading, and the one place errors become exit codes.

Commands live in modules by area and are imported only when run (or listed by
``--help``); those modules import nothing heavy at the top, so ``sesstool decode``
and every TAB press start fast.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import typing as t

import click

from sesstool import __version__, redact
from sesstool.deadline import DeadlineExceeded
from sesstool.errors import SesstoolError, StoreError
from sesstool.render.env import Environment

# name -> (module, attribute). Order is the order of ``sesstool --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("sesstool.cli.inspect", "list_sessions"),
    "show": ("sesstool.cli.inspect", "show"),
    "stats": ("sesstool.cli.stats", "stats"),
    "edit": ("sesstool.cli.sessions", "edit"),
    "expire": ("sesstool.cli.sessions", "expire"),
    "persist": ("sesstool.cli.sessions", "persist"),
    "delete": ("sesstool.cli.sessions", "delete"),
    "purge": ("sesstool.cli.bulk", "purge"),
    "export": ("sesstool.cli.bulk", "export"),
    "import": ("sesstool.cli.bulk", "import_"),
    "migrate": ("sesstool.cli.bulk", "migrate"),
    "decode": ("sesstool.cli.cookies", "decode"),
    "sign": ("sesstool.cli.cookies", "sign"),
    "crack": ("sesstool.cli.cookies", "crack"),
    "replay": ("sesstool.cli.replay", "replay"),
    "doctor": ("sesstool.cli.doctor", "doctor"),
    "watch": ("sesstool.cli.watch", "watch"),
    "completion": ("sesstool.cli.completion", "completion"),
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _ReaderGone(Exception):
    """stdout's reader went away; carried past click, which would exit 1 on EPIPE."""


class _NoCommand(Exception):
    """``sesstool`` alone. Click 8.1 prints the help and exits 0, 8.2 exits 2: decide here."""

    def __init__(self, ctx: click.Context) -> None:
        super().__init__()
        self.ctx = ctx


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is needed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            raise _NoCommand(ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise _ReaderGone() from e

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def _load(self, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # a command area not built yet
                return None
            raise
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="sesstool")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Inspect and administer Flask sessions.

    Server-side sessions as Flask-Session writes them (Redis, memcached, SQL
    through SQLAlchemy), and Flask's own signed cookie sessions.

    \b
    Examples:
      sesstool list --store redis://localhost:6379/0 --where user_id=42
      sesstool show 3q2-7wEj... --format json
      sesstool purge --empty --dry-run
      sesstool list --store sqlite:///instance/app.db --table sessions
      sesstool purge --expired --yes --store postgresql://app@db/app
      sesstool decode 'eyJ1c2VyX2lkIjo0Mn0.Z0...' --secret-key "$KEY"

    Store, prefix, serializer, SQL table and app also come from SESSTOOL_STORE,
    SESSTOOL_PREFIX, SESSTOOL_SERIALIZER, SESSTOOL_TABLE and SESSTOOL_APP.
    """
    if not isinstance(ctx.obj, Environment):
        ctx.obj = Environment()


_SESSION_ID_LIKE = re.compile(r"-[A-Za-z0-9_-]{15,}(\.[A-Za-z0-9_-]+)?")

#: Options whose value is a secret, and env vars holding one (or a URL with one).
_SECRET_OPTIONS = ("--secret-key",)
_URL_OPTIONS = ("--store", "--url")
_SECRET_ENV = ("SESSTOOL_SECRET_KEY",)
_URL_ENV = ("SESSTOOL_STORE",)


def remember_secrets(argv: t.Sequence[str]) -> None:
    """Register the secrets this run was given on the command line and in the
    environment, before anything can fail and quote them.

    Key files and an app's ``SECRET_KEY`` are registered where they are read.
    """
    redact.forget_all()
    for name in _SECRET_ENV:
        redact.remember(os.environ.get(name) or None)
    for name in _URL_ENV:
        redact.remember_url(os.environ.get(name))
    for index, word in enumerate(argv):
        option, equals, inline = word.partition("=")
        value = inline if equals else (argv[index + 1] if index + 1 < len(argv) else None)
        if option in _SECRET_OPTIONS:
            redact.remember(value)
        elif option in _URL_OPTIONS or "://" in word:
            redact.remember_url(value if option in _URL_OPTIONS else word)


def _usage_message(error: click.UsageError, argv: t.Sequence[str]) -> str:
    if isinstance(error, click.NoSuchOption):
        # Click reports "-Xy3..." as the short option "-X"; find the whole word.
        word = next((a for a in argv if a.startswith(error.option_name) and _SESSION_ID_LIKE.fullmatch(a)), None)
        if word is not None:
            command = error.ctx.command_path if error.ctx else "sesstool"
            return f"unknown option {word!r}; if it is a session id, pass it after --: {command} -- {word}"
    message = error.format_message()
    if error.ctx is not None and not isinstance(error, click.BadParameter):
        message += f" (see '{error.ctx.command_path} --help')"
    return message


def run(argv: t.Sequence[str] | None = None, env: Environment | None = None) -> t.NoReturn:
    """Run the CLI and exit with the contract's code; the console script's entry point."""
    sys.exit(main(argv, env))


def main(argv: t.Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run the CLI and return its exit code, printing one ``error:`` line on failure."""
    env = env or Environment()
    argv = list(argv) if argv is not None else sys.argv[1:]
    debug = os.environ.get("SESSTOOL_DEBUG", "") not in ("", "0")
    remember_secrets(argv)
    try:
        result = cli.main(
            args=argv,
            prog_name="sesstool",
            standalone_mode=False,
            obj=env,
        )
        return result if isinstance(result, int) else 0
    except SesstoolError as e:
        if debug:
            raise
        env.error(str(e))
        return e.exit_code
    except _NoCommand as e:
        # `sesstool` alone: the help is the answer, not an error line.
        env.stderr.write(e.ctx.get_help() + "\n")
        return 2
    except DeadlineExceeded as e:
        if debug:
            raise
        env.error(str(e))
        return StoreError.exit_code
    except click.UsageError as e:
        env.error(_usage_message(e, argv))
        return 2
    except click.ClickException as e:
        env.error(e.format_message())
        return e.exit_code
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        env.error("aborted")
        return 130
    except KeyboardInterrupt:
        env.error("interrupted")
        return 130
    except (BrokenPipeError, _ReaderGone):
        # The reader went away (`sesstool list | head`): it has what it wanted.
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
