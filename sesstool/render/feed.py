"""How ``watch`` shows events: NDJSON (or CSV) lines flushed one by one, or on a
terminal a live view: the most recent events and a counter per kind, redrawn as
events arrive. Keys are written by attackers: every cell goes through
:func:`~sesstool.render.terminal.printable` and is handed to rich as ``Text``, never markup.
"""

from __future__ import annotations

import csv
import typing as t

from sesstool.ops.records import dumps
from sesstool.render.env import Environment
from sesstool.render.terminal import printable

if t.TYPE_CHECKING:
    from sesstool.ops.watch import WatchCounts

#: rows the live view keeps
RECENT = 20
FIELDS = ("at", "event", "sid", "key")


def emit_feed(env: Environment, records: t.Iterable[dict[str, t.Any] | None], fmt: str, counts: WatchCounts) -> None:
    """Write each record as it comes; ``None`` steps only let a live view redraw."""
    if fmt == "table" and env.stdout_isatty:
        _live(env, records, counts)
    elif fmt == "csv":
        writer = csv.writer(env.stdout, lineterminator="\n")
        writer.writerow(FIELDS)
        for record in records:
            if record is not None:
                writer.writerow([printable(str(record[name])) for name in FIELDS])
                env.stdout.flush()
    else:
        # json included: a feed without end is no array; each event is one JSON line.
        for record in records:
            if record is not None:
                env.stdout.write(dumps(record) + "\n")
                env.stdout.flush()


def _live(env: Environment, records: t.Iterable[dict[str, t.Any] | None], counts: WatchCounts) -> None:
    from collections import deque

    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    recent: deque[dict[str, t.Any]] = deque(maxlen=RECENT)
    styles = {"created": "green", "changed": "yellow", "deleted": "red", "expired": "magenta"}

    def view() -> Group:
        table = Table(header_style="bold", expand=False)
        for name in ("AT", "EVENT", "SID"):
            table.add_column(name, overflow="fold")
        for record in recent:
            table.add_row(Text(record["at"]), Text(record["event"], style=styles.get(record["event"], "")),
                          Text(printable(record["sid"])))  # fmt: skip
        summary = "  ".join(f"{kind} {n:,}" for kind, n in counts.by_kind.items())
        return Group(table, Text(f"{summary}  (Ctrl-C to stop)"))

    console = Console(file=env.stdout, no_color=bool(env.no_color))
    with Live(view(), console=console, auto_refresh=False, transient=False) as live:
        for record in records:
            if record is not None:
                recent.append(record)
            live.update(view(), refresh=True)
