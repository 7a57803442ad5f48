"""``stats`` for people: figures, and on a terminal compact bar charts (rich).

Charts are drawn only when stdout is a terminal that may have colour and the format
is ``table``; pipes, ``NO_COLOR`` and ``--format json|ndjson|csv`` get the numbers
alone. Names shown next to bars (a field's values, field names) are session data,
written by whoever holds a session: they pass through :func:`printable` and are
handed to rich as :class:`rich.text.Text`, never as markup.
"""

from __future__ import annotations

import typing as t

from sesstool.durations import format_duration
from sesstool.render.env import Environment
from sesstool.render.output import Column, emit_many, emit_one
from sesstool.render.terminal import printable, printable_lines

#: Widest bar, in cells.
BAR_WIDTH = 30

Bars = t.Sequence[tuple[str, int]]

VALUE_COLUMNS = [
    Column("value", "VALUE"),
    Column("sessions", "SESSIONS", justify="right"),
    Column("bytes", "BYTES", justify="right"),
]
FIELD_COLUMNS = [
    Column("field", "FIELD"),
    Column("sessions", "SESSIONS", justify="right"),
    Column("bytes", "BYTES", justify="right"),
    Column("max", "MAX", justify="right"),
]


def bar(count: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A bar of ``count`` against ``largest``: whole cells, and one eighth-cell step at
    the end so that small differences still show; at least a sliver for any non-zero count."""
    if count <= 0 or largest <= 0:
        return ""
    eighths = max(1, round(8 * width * count / largest))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else " ▏▎▍▌▋▊▉"[rest])


def _chart(env: Environment, title: str, rows: t.Sequence[tuple[str, t.Sequence[str], int]],
           headers: t.Sequence[str] | None = None) -> None:
    """Rows of (label, figures, bar length) as one rich table, the bar column last;
    ``headers`` names the label and figure columns (none: no header line)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    largest = max((size for _, _, size in rows), default=0)
    width = max((len(figures) for _, figures, _ in rows), default=0)
    names = list(headers) if headers else [""] * (width + 1)
    table = Table(title=Text(title, style="bold"), title_justify="left", box=None, show_header=bool(headers),
                  header_style="bold", pad_edge=False)
    table.add_column(names[0], overflow="fold")
    for header in names[1:]:
        table.add_column(header, justify="right")
    table.add_column("", style="cyan", no_wrap=True)
    for label, figures, size in rows:
        table.add_row(Text(printable(label)), *(Text(f) for f in figures), Text(bar(size, largest)))
    Console(file=env.stdout).print(table)


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "-"
    return "<1%" if 0 < part < whole / 100 else f"{100 * part / whole:.0f}%"


def _trim(rows: Bars) -> Bars:
    """Buckets without the empty ones before the first and after the last non-empty one."""
    filled = [i for i, (_, n) in enumerate(rows) if n]
    return rows[filled[0]: filled[-1] + 1] if filled else []


def emit_stats(env: Environment, result: dict[str, t.Any], fmt: str,
               histograms: t.Callable[[], t.Mapping[str, Bars]]) -> None:
    """``stats``: the figures, then (on a terminal) the serializer mix, size and TTL charts."""
    if fmt != "table" or not env.rich_stdout:
        emit_one(env, result, fmt, human=lambda: stats_text(result))
        return
    env.stdout.write(stats_text(result) + "\n")
    count = result["count"]
    spread = histograms()
    serializers = list(result["serializers"].items())
    for title, rows in (("serializers", serializers), ("size", _trim(spread["size"])), ("ttl", _trim(spread["ttl"]))):
        if count and rows:
            _chart(env, title, [(label, (f"{n:,}", _percent(n, count)), n) for label, n in rows])
    env.stdout.flush()


def stats_text(result: dict[str, t.Any]) -> str:
    size, ttl = result["size"], result["ttl"]
    by_serializer = ", ".join(f"{name} {n:,}" for name, n in result["serializers"].items()) or "-"
    undecodable = f"undecodable   {result['undecodable']:,}\n" if result["undecodable"] else ""
    return (
        f"sessions      {result['count']:,}\n"
        f"serializers   {by_serializer}\n"
        f"no expiry     {result['no_ttl']:,}\n"
        f"empty         {result['empty']:,}\n"
        f"{undecodable}"
        f"size          total {size['total']:,} B, p50 {size['p50'] or 0:,} B, "
        f"p95 {size['p95'] or 0:,} B, max {size['max'] or 0:,} B\n"
        f"ttl           min {format_duration(ttl['min'])}, p50 {format_duration(ttl['p50'])}, "
        f"max {format_duration(ttl['max'])}\n"
    )


def emit_ranked(env: Environment, result: dict[str, t.Any], fmt: str) -> None:
    """``stats --by`` / ``--fields``: JSON as it is, CSV rows, or a ranked table
    (ranked bars on a terminal) with what was missing and how exact it is."""
    by_value = "values" in result
    rows: list[dict[str, t.Any]] = result["values"] if by_value else result["fields"]
    if fmt in ("json", "ndjson"):
        emit_one(env, result, fmt)
        return
    columns = VALUE_COLUMNS if by_value else FIELD_COLUMNS
    if fmt == "csv":
        emit_many(env, rows, fmt, columns)
        return
    if env.rich_stdout and rows:
        name, rank = ("value", "sessions") if by_value else ("field", "bytes")
        title = f"sessions per value of {result['field']}" if by_value else "bytes per field"
        _chart(env, title, [
            (row[name], [f"{row[c.field]:,}" for c in columns[1:]], row[rank]) for row in rows
        ], headers=[c.header for c in columns])
    else:
        emit_many(env, rows, fmt, columns)
    env.stdout.write(printable_lines(ranked_footer(result)))
    env.stdout.flush()


def ranked_footer(result: dict[str, t.Any]) -> str:
    """What the ranked list leaves out: sessions without the field, exactness, undecodable."""
    lines = [f"{result['count']:,} sessions"]
    if "missing" in result:
        lines[0] += f", {result['missing']:,} without {result['field']}"
        if result.get("distinct") is not None:
            lines[0] += f", {result['distinct']:,} distinct values"
    else:
        lines[0] += f", {result['total']:,} bytes stored"
    if result["approximate"]:
        what = "session count" if "missing" in result else "byte total"
        lines.append(f"approximate: too many distinct {'values' if 'missing' in result else 'fields'} to count "
                     f"exactly; each {what} may be up to {result['error']:,} under the true one")
    if result["undecodable"]:
        lines.append(f"{result['undecodable']:,} sessions could not be decoded (not counted)")
    return "\n".join(lines) + "\n"
