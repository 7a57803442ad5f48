"""Commands that change one named session: ``edit``, ``expire``, ``persist``, ``delete``."""

from __future__ import annotations

import time
import typing as t

import click

from sesstool.cli.inspect import batch_option, session_key
from sesstool.cli.options import format_option, resolve_settings, store_options
from sesstool.durations import format_duration
from sesstool.render.env import Environment
from sesstool.render.output import emit_one


@click.command()
@store_options
@click.argument("sid", metavar="SID")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set a key (dotted path into nested objects); VALUE is JSON when valid JSON, "
              'else a string; the tagged form ({"$datetime": "..."}) gives other types. Repeatable.')
@click.option("--unset", "unsets", multiple=True, metavar="KEY",
              help="Remove a key (dotted path). Repeatable; applied before --set.")
@click.option("--editor", "use_editor", is_flag=True,
              help="Edit the session as lossless JSON in $VISUAL/$EDITOR (like kubectl edit).")
@format_option
@click.pass_context
def edit(ctx: click.Context, /, sid: str, sets: tuple[str, ...], unsets: tuple[str, ...], use_editor: bool,
         fmt: str, **_: t.Any) -> None:
    """Change a session in place, keeping its TTL and serializer.

    The write is atomic (compare-and-set): when the app writes the session
    meanwhile, --set/--unset are applied again to what the app wrote, and an editor
    buffer is merged key by key; the app's newer write is never overwritten. Exit 3
    when the session keeps changing or the app changed a key you edited too; exit 4
    when its serializer cannot hold the result exactly (for example a pickled
    object of the app's own classes).

    \b
    Examples:
      sesstool edit 3q2-7wEj... --set user_id=43 --set 'flags={"beta": true}'
      sesstool edit 3q2-7wEj... --set cart.items.0=7 --unset csrf_token
      sesstool edit 3q2-7wEj... --set 'name="42"'        # the string "42"
      EDITOR=nano sesstool edit 3q2-7wEj... --editor
    """
    from sesstool.ops import edits
    from sesstool.ops.records import make_record

    env: Environment = ctx.obj
    if use_editor and (sets or unsets):
        raise click.UsageError("use either --editor or --set/--unset, not both")
    if not use_editor and not (sets or unsets):
        raise click.UsageError("nothing to change: give --set KEY=VALUE, --unset KEY or --editor")
    settings = resolve_settings(ctx)
    key = session_key(settings, sid)
    store = settings.open_store(writes="edit")
    try:
        if use_editor:
            outcome = _edit_in_editor(env, store, key, settings.serializer)
        else:
            change = edits.parse_change(sets, unsets)
            notes: list[str] = []

            def transform(data: dict[t.Any, t.Any]) -> dict[t.Any, t.Any]:
                new, found = edits.apply_change(data, change)
                notes[:] = found
                return new

            outcome = edits.edit_session(store, key, transform, serializer=settings.serializer)
            for note in notes:
                env.warn(note)
    finally:
        store.close()
    if outcome is None:
        return
    record = make_record(outcome.decoded, len(settings.prefix), with_data=True)
    record["changed"] = outcome.changed
    emit_one(env, record, fmt, human=lambda: _edited_line(record))


def _edit_in_editor(env: Environment, store: t.Any, key: bytes, serializer: str) -> t.Any:
    from sesstool.ops import edits
    from sesstool.ops.listing import get_decoded

    decoded = get_decoded(store, key, serializer)
    edits.check_writable(decoded)
    assert decoded.data is not None
    buffer = edits.EditorBuffer(decoded.data, key)

    def ask_again(problem: str) -> bool:
        if not env.stdin_isatty:
            return False
        env.stderr.write(f"error: {problem}\nEdit again? [Y/n] ")
        env.stderr.flush()
        return env.stdin.readline().strip().lower() in ("", "y", "yes")

    edited = buffer.edit(edits.editor_command(), ask_again)
    if edited is None:
        buffer.discard()
        env.info(f"{key.decode('utf-8', 'replace')}: unchanged, nothing written")
        return None
    transform = edits.editor_transform(decoded.data, edited, buffer.path)
    outcome = edits.edit_session(store, key, transform, serializer=serializer)
    buffer.discard()
    return outcome


def _edited_line(record: dict[str, t.Any]) -> str:
    ttl = "no expiry" if record["ttl"] is None else f"TTL {format_duration(record['ttl'])}"
    if not record["changed"]:
        return f"{record['key']}: already as asked, nothing written\n"
    return f"{record['key']}: updated ({record['serializer']}, {ttl} kept)\n"


@click.command()
@store_options
@click.argument("sid", metavar="SID")
@click.option("--in", "in_", metavar="DURATION", help="End the session this long from now (90, 90s, 15m, 2h, 7d).")
@click.option("--at", metavar="TIME", help="End it at this time (ISO 8601 with offset, or Unix timestamp).")
@click.option("--now", is_flag=True, help="End it now (the session is deleted).")
@format_option
@click.pass_context
def expire(ctx: click.Context, /, sid: str, in_: str | None, at: str | None, now: bool, fmt: str, **_: t.Any) -> None:
    """Set when a session ends.

    A time in the past, --in 0 and --now end the session at once (it is deleted).

    \b
    Examples:
      sesstool expire 3q2-7wEj... --in 15m
      sesstool expire 3q2-7wEj... --at 2026-12-01T09:00:00+00:00
      sesstool expire 3q2-7wEj... --now
    """
    from sesstool.durations import parse_duration, parse_time
    from sesstool.ops.expiry import set_expiry

    env: Environment = ctx.obj
    if sum(x is not None and x is not False for x in (in_, at, now)) != 1:
        raise click.UsageError("give exactly one of --in DURATION, --at TIME or --now")
    seconds = parse_duration(in_) if in_ is not None else None
    moment = parse_time(at) if at is not None else None
    settings = resolve_settings(ctx)
    key = session_key(settings, sid)
    store = settings.open_store(writes="expire")
    try:
        record = set_expiry(store, key, len(settings.prefix), seconds=seconds, at=moment, clock=time.time)
    finally:
        store.close()
    emit_one(env, record, fmt, human=lambda: _expiry_line(record))


def _expiry_line(record: dict[str, t.Any]) -> str:
    if record["deleted"]:
        return f"{record['key']}: ended now (deleted)\n"
    return f"{record['key']}: expires in {format_duration(record['ttl'])} ({record['expires_at']})\n"


@click.command()
@store_options
@click.argument("sid", metavar="SID")
@format_option
@click.pass_context
def persist(ctx: click.Context, /, sid: str, fmt: str, **_: t.Any) -> None:
    """Remove a session's expiry: it lives until deleted.

    \b
    Examples:
      sesstool persist 3q2-7wEj...
      sesstool persist session:3q2-7wEj... --format json
    """
    from sesstool.ops.expiry import remove_expiry

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    key = session_key(settings, sid)
    store = settings.open_store(writes="persist")
    try:
        record = remove_expiry(store, key, len(settings.prefix))
    finally:
        store.close()
    emit_one(env, record, fmt, human=lambda: f"{record['key']}: never expires now\n")


@click.command()
@store_options
@click.argument("sids", metavar="SID... | -", nargs=-1, required=True)
@batch_option
@format_option
@click.pass_context
def delete(ctx: click.Context, /, sids: tuple[str, ...], batch: int, fmt: str, **_: t.Any) -> None:
    """Delete sessions by id; '-' reads ids from stdin, one a line.

    Every named session that exists is deleted; exit 1 when any did not exist.

    \b
    Examples:
      sesstool delete 3q2-7wEj... Xk9-aa01...
      sesstool list --where user_id=42 --format ndjson | jq -r .sid | sesstool delete -
      sesstool delete -- -Xy9...
    """
    from sesstool.cookies.sids import resolve_sid
    from sesstool.ops.purge import delete_sessions, missing_error

    env: Environment = ctx.obj
    if "-" in sids and len(sids) > 1:
        raise click.UsageError("'-' reads ids from stdin and cannot be mixed with ids")
    settings = resolve_settings(ctx)
    texts: t.Iterable[str] = (line.strip() for line in env.stdin) if sids == ("-",) else sids
    named = ((text, resolve_sid(text, settings.prefix, settings.secret_keys,
                                                settings.cookie_name).key) for text in texts if text)
    store = settings.open_store(writes="delete")
    try:
        result = delete_sessions(store, named, batch=batch)
        emit_one(env, result.as_json(), fmt, human=lambda: f"deleted {result.deleted:,} sessions\n")
        if result.missing:
            raise missing_error(result, store)
    finally:
        store.close()
