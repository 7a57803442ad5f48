"""``doctor``'s checklist for people: one line a check, its level first.

Messages quote stored keys and session ids, which attackers choose: every line goes
through :func:`printable` (and rich gets :class:`rich.text.Text`, never markup).
"""

from __future__ import annotations

import typing as t

from sesstool.render.env import Environment
from sesstool.render.output import Column, emit_many, emit_one
from sesstool.render.terminal import printable, printable_lines

_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def emit_checklist(env: Environment, report: dict[str, t.Any], fmt: str) -> None:
    """The report as the contract's JSON, CSV rows, or a checklist (coloured on a terminal)."""
    if fmt in ("json", "ndjson"):
        emit_one(env, report, fmt)
        return
    if fmt == "csv":
        emit_many(env, report["checks"], fmt, [Column("id", "id"), Column("level", "level"),
                                                Column("message", "message")])
        return
    checks = report["checks"]
    width = max((len(c["id"]) for c in checks), default=0)
    summary = f"{report['failed']} failed, {report['warnings']} warnings, {len(checks)} checks\n"
    if env.rich_stdout:
        from rich.console import Console
        from rich.text import Text

        console = Console(file=env.stdout, soft_wrap=True)
        for check in checks:
            console.print(Text.assemble((_MARKS[check["level"]], _STYLES[check["level"]]),
                                        f"  {check['id']:<{width}}  {printable(check['message'])}"))
        console.print(Text(summary.rstrip("\n")))
        return
    lines = "".join(f"{_MARKS[c['level']]}  {c['id']:<{width}}  {printable(c['message'])}\n" for c in checks)
    env.stdout.write(printable_lines(lines + summary))
    env.stdout.flush()
