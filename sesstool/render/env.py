"""The terminal environment a command runs in: streams, TTY-ness, colour.

Built when a command runs (never at import), kept on ``ctx.obj``; tests replace it.
"""

from __future__ import annotations

import os
import sys
import typing as t
from dataclasses import dataclass, field

from sesstool.redact import redact
from sesstool.render.terminal import printable


@dataclass
class Environment:
    """Streams and terminal facts, each overridable by keyword in tests."""

    stdin: t.TextIO = field(default_factory=lambda: sys.stdin)
    stdout: t.TextIO = field(default_factory=lambda: sys.stdout)
    stderr: t.TextIO = field(default_factory=lambda: sys.stderr)
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    no_color: bool | None = None

    def __post_init__(self) -> None:
        if self.stdin_isatty is None:
            self.stdin_isatty = _isatty(self.stdin)
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)
        if self.no_color is None:
            self.no_color = "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb"

    @property
    def rich_stdout(self) -> bool:
        """Whether tables on stdout may use colour and box drawing."""
        return bool(self.stdout_isatty) and not self.no_color

    @property
    def show_progress(self) -> bool:
        """Progress goes to stderr only when a person watches it."""
        return bool(self.stderr_isatty)

    def warn(self, message: str) -> None:
        """One ``warning:`` line: secrets masked, control characters shown as escapes."""
        self.stderr.write(f"warning: {stderr_line(message)}\n")
        self.stderr.flush()

    def info(self, message: str) -> None:
        self.stderr.write(f"{stderr_line(message)}\n")
        self.stderr.flush()

    def error(self, message: str) -> None:
        """The one ``error:`` line a failed command prints."""
        self.stderr.write(f"error: {stderr_line(message) or 'failed'}\n")
        self.stderr.flush()


def stderr_line(message: str) -> str:
    """A message as one safe line: secrets masked, then every control character
    (a newline in a stored key, an escape sequence) shown as an escape."""
    return printable(redact(message.strip()))


def _isatty(stream: t.Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
