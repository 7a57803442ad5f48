"""Read-only commands: ``list``, ``show`` (``stats`` is in :mod:`sesstool.cli.stats`)."""

from __future__ import annotations

import base64
import contextlib
import json
import typing as t

import click

from sesstool.cli.completion import complete_session_ids
from sesstool.cli.options import format_option, paced, rate_option, resolve_settings, store_options
from sesstool.durations import format_duration
from sesstool.ops.pacing import DEFAULT_BATCH, PACED_STEP, batch_for
from sesstool.render.env import Environment
from sesstool.render.output import Column, emit_many, emit_one
from sesstool.render.progress import Progress
from sesstool.render.terminal import printable

if t.TYPE_CHECKING:
    from sesstool.ops.listing import Scan, ScanCounters
    from sesstool.ops.selectors import Predicate
    from sesstool.ops.settings import Settings

LIST_COLUMNS = [
    Column("sid", "SID"),
    Column("ttl", "TTL", format_duration, "right"),
    Column("size", "SIZE", justify="right"),
    Column("serializer", "SERIALIZER"),
]


def where_option(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--where",
        "where",
        multiple=True,
        metavar="EXPR",
        help="Select by data: FIELD=VALUE, FIELD!=VALUE, FIELD~REGEX, FIELD, !FIELD "
        "(dotted paths; VALUE is JSON when valid). Repeat: all must match.",
    )(fn)


def batch_option(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--batch",
        type=click.IntRange(1, 100_000),
        default=None,
        callback=_batch_size,
        help=f"Keys per SCAN step and per round trip. [default: {DEFAULT_BATCH:,}; with --rate N: "
        f"N/{1 / PACED_STEP:.0f}, at least 10]",
    )(fn)


def _batch_size(ctx: click.Context, param: click.Parameter, batch: int | None) -> int:
    # An option given on the command line is processed before one left to its
    # default, so --rate is known here when the user gave it.
    return batch if batch is not None else batch_for(ctx.params.get("rate"))


def warn_other_types(env: Environment, counters: ScanCounters, prefix: str, *, selected: bool = False) -> None:
    """The end-of-command warnings of a scan (``selected``: a ``--where`` was given)."""
    from sesstool.ops.records import NOT_MATCHED, REPORTED

    warn_skipped(env, counters.other_types, prefix, counters.undecodable, NOT_MATCHED if selected else REPORTED)


def warn_skipped(env: Environment, other_types: dict[str, int], prefix: str, undecodable: int, how: str) -> None:
    """Warn about keys of other types and sessions that could not be decoded (``how``:
    what the command did with those)."""
    from sesstool.ops.records import undecodable_warning

    if other_types:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(other_types.items()))
        env.warn(f"skipped keys under {prefix!r} that are not session values: {kinds}")
    warning = undecodable_warning(undecodable, how)
    if warning:
        env.warn(warning)


def session_key(settings: Settings, text: str) -> bytes:
    """The store key a SID argument names (bare id, full key or signed cookie value)."""
    from sesstool.cookies.sids import resolve_sid

    return resolve_sid(text, settings.prefix, settings.secret_keys, settings.cookie_name).key


@contextlib.contextmanager
def reading(ctx: click.Context, where: tuple[str, ...], label: str, *, batch: int, rate: int | None,
            progress: bool = True) -> t.Iterator[tuple[Scan, Predicate | None]]:
    """The read-only pass of ``list``, ``stats`` or ``export`` over the sessions under
    the prefix, with its ``--where``, its progress line (``label``) and its ``--rate``.

    The store is closed and the progress line cleared when the block ends; the
    command then warns of what the scan skipped (:func:`warn_other_types`).
    """
    from sesstool.ops.listing import Scan
    from sesstool.ops.selectors import parse_all

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    predicate = parse_all(where)
    store = settings.open_store()
    line = Progress(env.stderr, label, enabled=env.show_progress and progress)
    try:
        yield Scan(store, settings.prefix, settings.serializer, batch, on_batch=paced(line.advance, rate)), predicate
    finally:
        line.finish()
        store.close()


@click.command("list")
@store_options
@where_option
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after N sessions.")
@click.option("--data", "with_data", is_flag=True, help="Include each session's data.")
@click.option(
    "--sort",
    type=click.Choice(["key", "ttl", "size"]),
    default=None,
    help="Sort (reads every selected session before printing).",
)
@batch_option
@rate_option
@format_option
@click.pass_context
def list_sessions(
    ctx: click.Context,
    /,
    where: tuple[str, ...],
    limit: int | None,
    with_data: bool,
    sort: str | None,
    batch: int,
    rate: int | None,
    fmt: str,
    **_: t.Any,
) -> None:
    """List the sessions under the prefix (SCAN, streamed; never KEYS).

    A session that cannot be decoded (or shown) is listed as unknown; a warning at
    the end counts them, and the exit code stays 0.

    \b
    Examples:
      sesstool list
      sesstool list --where user_id=42 --format ndjson
      sesstool list --where '!user_id' --where _permanent=true --limit 20
      sesstool list --sort size --limit 10 --data
      sesstool list --rate 5000 --format ndjson > sessions.ndjson   # gentle on a busy store
    """
    from sesstool.ops.listing import iter_decoded, iter_plain_records, iter_records
    from sesstool.stores.capabilities import Capability

    env: Environment = ctx.obj
    with reading(ctx, where, "scanned", batch=batch, rate=rate, progress=fmt != "table") as (scan, predicate):
        records: t.Iterable[dict[str, t.Any]]
        if predicate is None and not with_data and sort is None:
            records = iter_plain_records(scan, limit)
        else:
            records = iter_records(iter_decoded(scan, predicate), scan.prefix, with_data=with_data, sort=sort,
                                   limit=limit, counters=scan.counters,
                                   ids=scan.store.supports(Capability.ENUMERABLE_IDS))
        columns = LIST_COLUMNS + ([Column("data", "DATA", _compact)] if with_data else [])
        emit_many(env, records, fmt, columns)
    warn_other_types(env, scan.counters, scan.prefix, selected=predicate is not None)


def _compact(value: t.Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@click.command()
@store_options
@click.argument("sid", metavar="SID", shell_complete=complete_session_ids)
@click.option("--raw", is_flag=True, help="Print the stored bytes as they are.")
@format_option
@click.pass_context
def show(ctx: click.Context, /, sid: str, raw: bool, fmt: str, **_: t.Any) -> None:
    """Show one session, decoded.

    SID is a session id (the prefix is added), a full key, or a signed
    ``sid.signature`` cookie value (verified with the secret key). An id that
    begins with '-' goes after '--'.

    \b
    Examples:
      sesstool show 3q2-7wEjRb0...
      sesstool show session:3q2-7wEjRb0... --format json
      sesstool show --raw 3q2-7wEjRb0... > value.bin
      sesstool show -- -Xy9...
    """
    from sesstool.ops.listing import get_decoded
    from sesstool.ops.records import make_record

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    key = session_key(settings, sid)
    store = settings.open_store()
    try:
        decoded = get_decoded(store, key, settings.serializer)
    finally:
        store.close()
    if raw:
        _print_raw(env, decoded.item.value or b"", fmt, key)
        return
    record = make_record(decoded, len(settings.prefix), with_data=True)
    emit_one(env, record, fmt, human=lambda: _human_record(record))
    if record["data"] is None:
        from sesstool.errors import UndecodableValue

        raise UndecodableValue(f"the value of {record['key']!r} is not a msgpack, json or pickle session")


def _print_raw(env: Environment, value: bytes, fmt: str, key: bytes) -> None:
    if fmt in ("json", "ndjson"):
        emit_one(
            env, {"key": key.decode("utf-8", "backslashreplace"), "raw": base64.b64encode(value).decode("ascii")}, fmt
        )
        return
    if not env.stdout_isatty:
        buffer = getattr(env.stdout, "buffer", None)
        if buffer is not None:
            env.stdout.flush()
            buffer.write(value)
            buffer.flush()
        else:
            env.stdout.write(value.decode("utf-8", "surrogateescape"))
    else:
        # On a terminal, raw binary would garble the screen: show it escaped.
        env.stdout.write(repr(value)[2:-1] + "\n")
        env.stdout.flush()


def _human_record(record: dict[str, t.Any]) -> str:
    ttl = record["ttl"]
    lines = [  # key and sid are stored data: escaped, so a newline in one fakes no line
        f"key         {printable(record['key'])}",
        f"sid         {printable(str(record['sid']))}",
        f"ttl         {'never expires' if ttl is None else f'{format_duration(ttl)} ({ttl} s)'}",
        f"size        {record['size']} bytes",
        f"serializer  {record['serializer']}",
        "data",
    ]
    data = record.get("data")
    body = "  (cannot be decoded)" if data is None else json.dumps(data, indent=2, ensure_ascii=False)
    return "\n".join(lines) + "\n" + body + "\n"
