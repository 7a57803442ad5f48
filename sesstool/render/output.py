"""Render records as a table, JSON, NDJSON or CSV: the one place that writes results.

Commands hand over plain dicts (already in the tagged JSON form) or an iterator of
them; ndjson and csv stream row by row, json streams an array element by element,
and a table is drawn with rich on a terminal and as plain aligned text otherwise.

Everything meant for people (table cells, CSV cells, ``key: value`` lines) passes
through :func:`sesstool.render.terminal.printable`: stored keys and values are written by
attackers, and must neither drive the terminal nor fake a row. JSON and NDJSON need
nothing extra: JSON escapes control characters, so each record stays one line.
"""

from __future__ import annotations

import csv
import itertools
import typing as t

from sesstool.ops.records import RecordBatches, dumps, encode_lines
from sesstool.render.env import Environment
from sesstool.render.terminal import printable, printable_lines

FORMATS = ("table", "json", "ndjson", "csv")

class Column(t.NamedTuple):
    """A table/CSV column: the record field, its header and how to show a value."""

    field: str
    header: str
    show: t.Callable[[t.Any], str] = lambda value: "" if value is None else str(value)
    justify: str = "left"


def emit_many(
    env: Environment,
    records: t.Iterable[dict[str, t.Any]],
    fmt: str,
    columns: t.Sequence[Column],
    *,
    title: str | None = None,
) -> int:
    """Write every record in ``fmt``; return how many were written."""
    if fmt == "ndjson":
        return _ndjson(env, records)
    if fmt == "json":
        return _json_array(env, records)
    if fmt == "csv":
        return _csv(env, records, columns)
    return _table(env, records, columns, title)


def emit_one(env: Environment, record: dict[str, t.Any], fmt: str, *, human: t.Callable[[], str] | None = None) -> None:
    """Write a single record: JSON for json/ndjson, ``human()`` (or key: value lines) otherwise."""
    if fmt in ("json", "ndjson"):
        env.stdout.write(dumps(record) + "\n")
    elif fmt == "csv":
        _csv(env, [record], [Column(name, name, _cell) for name in record])
    else:
        # Builders escape the fields they interpolate; this catches any they missed
        # (an escape sequence in a value), keeping their own line breaks.
        env.stdout.write(printable_lines(human()) if human else _key_values(record))
    env.stdout.flush()


def emit_text(env: Environment, text: str) -> None:
    """Write plain text as it is (a cookie, a key), with a newline; escaped on a terminal."""
    env.stdout.write((printable(text) if env.stdout_isatty else text) + "\n")
    env.stdout.flush()


def _cell(value: t.Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return printable(dumps(value))
    return printable(str(value))


def _key_values(record: dict[str, t.Any]) -> str:
    width = max((len(k) for k in record), default=0)
    return "".join(f"{printable(k):<{width}}  {_cell(v)}\n" for k, v in record.items())


def _ndjson(env: Environment, records: t.Iterable[dict[str, t.Any]]) -> int:
    count = 0
    stream = env.stdout
    buffer = getattr(stream, "buffer", None)
    if isinstance(records, RecordBatches):
        for batch in records.batches:
            count += _write_lines(stream, buffer, batch)
        stream.flush()
        return count
    chunk: list[dict[str, t.Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= 1024:
            count += _write_lines(stream, buffer, chunk)
            chunk = []
    count += _write_lines(stream, buffer, chunk)
    stream.flush()
    return count


def _write_lines(stream: t.TextIO, buffer: t.Any, records: list[dict[str, t.Any]]) -> int:
    if not records:
        return 0
    # One encoder call per chunk, and the terminal-friendly flush only per chunk.
    data = encode_lines(records)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
    else:
        stream.write(data.decode("utf-8"))
    return len(records)


def _json_array(env: Environment, records: t.Iterable[dict[str, t.Any]]) -> int:
    stream = env.stdout
    iterator = iter(records)
    # Nothing is written before the first record exists, so a store that fails
    # at once leaves stdout empty rather than holding a lone "[".
    first = next(iterator, None)
    if first is None:
        stream.write("[]\n")
        stream.flush()
        return 0
    stream.write("[\n" + dumps(first))
    count = 1
    for record in iterator:
        stream.write(",\n" + dumps(record))
        count += 1
    stream.write("\n]\n")
    stream.flush()
    return count


KEY_COLUMN = Column("key", "KEY")


def _keyed(columns: t.Sequence[Column], first: dict[str, t.Any] | None, *, replace: bool) -> list[Column]:
    """``columns`` with the key shown where the sid is null (a store whose keys do
    not reveal the sid, as files named by a hash): instead of the sid column, or
    after it (``replace=False``, for CSV, whose columns stay the same)."""
    fields = [c.field for c in columns]
    if first is None or "sid" not in fields or "key" in fields or first.get("sid") is not None or "key" not in first:
        return list(columns)
    at = fields.index("sid")
    return [*columns[:at], *([] if replace else [columns[at]]), KEY_COLUMN, *columns[at + 1 :]]


def _peek(records: t.Iterable[dict[str, t.Any]]) -> tuple[dict[str, t.Any] | None, t.Iterator[dict[str, t.Any]]]:
    iterator = iter(records)
    first = next(iterator, None)
    return first, (iterator if first is None else itertools.chain([first], iterator))


def _csv(env: Environment, records: t.Iterable[dict[str, t.Any]], columns: t.Sequence[Column]) -> int:
    first, records = _peek(records)
    columns = _keyed(columns, first, replace=False)
    writer = csv.writer(env.stdout, lineterminator="\n")
    writer.writerow([c.field for c in columns])
    count = 0
    for record in records:
        writer.writerow([_cell(record.get(c.field)) for c in columns])
        count += 1
    env.stdout.flush()
    return count


#: Rows a table holds before it stops buffering: past this, rows stream as plain
#: text aligned on the first rows, so memory stays flat for any number of sessions.
TABLE_BUFFER_ROWS = 1000


def _table(
    env: Environment, records: t.Iterable[dict[str, t.Any]], columns: t.Sequence[Column], title: str | None
) -> int:
    first, iterator = _peek(records)
    columns = _keyed(columns, first, replace=True)
    rows = [_row(columns, record) for record in itertools.islice(iterator, TABLE_BUFFER_ROWS)]
    if len(rows) == TABLE_BUFFER_ROWS:
        return _streamed_table(env, rows, iterator, columns)
    if env.rich_stdout:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, header_style="bold")
        for column in columns:
            table.add_column(column.header, justify=t.cast(t.Any, column.justify), overflow="fold")
        for row in rows:
            # Text, not str: rich would read "[bold]" or "[link=...]" in a cell as markup.
            table.add_row(*(Text(cell) for cell in row))
        Console(file=env.stdout).print(table)
    else:
        _plain_table(env, rows, columns)
    return len(rows)


def _row(columns: t.Sequence[Column], record: dict[str, t.Any]) -> list[str]:
    return [printable(c.show(record.get(c.field))) for c in columns]


def _streamed_table(
    env: Environment,
    first: list[list[str]],
    rest: t.Iterator[dict[str, t.Any]],
    columns: t.Sequence[Column],
) -> int:
    line = _plain_table(env, first, columns)
    count = len(first)
    for record in rest:
        env.stdout.write(line(_row(columns, record)))
        count += 1
    env.stdout.flush()
    return count


def _plain_table(
    env: Environment, rows: list[list[str]], columns: t.Sequence[Column]
) -> t.Callable[[list[str]], str]:
    """Write an aligned table; return the function that formats a further row alike."""
    headers = [c.header for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if column.justify == "right" else cell.ljust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip() + "\n"

    env.stdout.write(line(headers))
    for row in rows:
        env.stdout.write(line(row))
    env.stdout.flush()
    return line
