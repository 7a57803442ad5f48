"""Every error sesstool raises on purpose, each bound to one exit code.

The CLI maps these to exit codes in one place (:mod:`sesstool.cli.main`); the
library never imports click and never exits.
"""

from __future__ import annotations


class SesstoolError(Exception):
    """Root of sesstool's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(SesstoolError):
    """A named session does not exist (exit 1)."""

    exit_code = 1


class SignatureInvalid(SesstoolError):
    """A signature did not verify with any known key (exit 1)."""

    exit_code = 1


class NoKey(SesstoolError):
    """A secret key is needed and none was given (exit 1)."""

    exit_code = 1


class NoMatch(SesstoolError):
    """A search (``crack``) found nothing (exit 1)."""

    exit_code = 1


class InvalidInput(SesstoolError):
    """Bad usage or malformed input: an option, a cookie, a ``--where`` (exit 2)."""

    exit_code = 2


class Unsupported(InvalidInput):
    """The store lacks what an operation needs (exit 2): idle time, a per-key
    expiry, writing at all. The message names the store, what it cannot do and,
    where known, the command or option that needed it."""


class StoreError(SesstoolError):
    """The store failed: unreachable, refused authentication, timed out (exit 3).

    ``done`` tells how far a bulk operation got before the failure, so the CLI can
    report it (for example the number of sessions a purge deleted).
    """

    exit_code = 3

    def __init__(self, message: str, done: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.done = done or {}


class UndecodableValue(SesstoolError):
    """Stored data that cannot be decoded or faithfully re-encoded (exit 4)."""

    exit_code = 4
