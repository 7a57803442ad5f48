"""Rendering: the one place that writes results (pure logic)."""

from __future__ import annotations

import io
import json

from sesstool.render.env import Environment
from sesstool.render.output import Column, emit_many, emit_one

COLUMNS = [Column("sid", "SID"), Column("size", "SIZE", justify="right")]
RECORDS = [{"sid": "a", "size": 3}, {"sid": "bbbb", "size": 12345}]


def env(tty: bool = False) -> Environment:
    return Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(),
                       stdout_isatty=tty, stderr_isatty=False, no_color=not tty)


def out(e: Environment) -> str:
    return e.stdout.getvalue()  # type: ignore[attr-defined]


def test_ndjson_streams_one_record_a_line() -> None:
    e = env()
    assert emit_many(e, iter(RECORDS), "ndjson", COLUMNS) == 2
    assert [json.loads(line) for line in out(e).splitlines()] == RECORDS


def test_json_is_one_array_and_empty_is_valid() -> None:
    e = env()
    emit_many(e, iter(RECORDS), "json", COLUMNS)
    assert json.loads(out(e)) == RECORDS
    empty = env()
    emit_many(empty, iter([]), "json", COLUMNS)
    assert json.loads(out(empty)) == []


def test_csv_has_field_names_and_json_cells() -> None:
    e = env()
    emit_many(e, iter([{"sid": "a,b", "size": {"x": 1}}]), "csv", COLUMNS)
    assert out(e).splitlines() == ["sid,size", '"a,b","{""x"":1}"']


def test_plain_table_aligns_and_has_no_escape_codes() -> None:
    e = env()
    emit_many(e, iter(RECORDS), "table", COLUMNS)
    assert out(e).splitlines() == ["SID    SIZE", "a         3", "bbbb  12345"]


def test_rich_table_on_a_terminal() -> None:
    e = env(tty=True)
    emit_many(e, iter(RECORDS), "table", COLUMNS)
    text = out(e)
    assert "SID" in text and "12345" in text and "─" in text


def test_emit_one_json_and_human() -> None:
    e = env()
    emit_one(e, {"a": 1}, "json")
    assert json.loads(out(e)) == {"a": 1}
    human = env()
    emit_one(human, {"a": 1}, "table", human=lambda: "custom\n")
    assert out(human) == "custom\n"


def test_a_long_table_streams_aligned_rows() -> None:
    from sesstool.render import output

    e = env(tty=True)
    many = ({"sid": f"s{i}", "size": i} for i in range(output.TABLE_BUFFER_ROWS + 500))
    assert emit_many(e, many, "table", COLUMNS) == output.TABLE_BUFFER_ROWS + 500
    lines = out(e).splitlines()
    assert lines[0].split() == ["SID", "SIZE"]
    assert len(lines) == output.TABLE_BUFFER_ROWS + 501
    assert lines[-1].split() == [f"s{output.TABLE_BUFFER_ROWS + 499}", str(output.TABLE_BUFFER_ROWS + 499)]
    assert "─" not in out(e)  # past the buffer, plain text
