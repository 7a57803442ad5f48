"""``watch``: session events as they happen."""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.inspect import where_option
from sesstool.cli.options import format_option, resolve_settings, store_options
from sesstool.render.env import Environment


@click.command()
@store_options
@where_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N events.")
@click.option("--enable", is_flag=True,
              help="Turn on what the server needs first (Redis: adds the missing flags to "
              "notify-keyspace-events, removing none).")  # fmt: skip
@format_option
@click.pass_context
def watch(ctx: click.Context, /, where: tuple[str, ...], limit: int | None, enable: bool, fmt: str,
          **_: t.Any) -> None:  # fmt: skip
    """Stream session events (created, changed, deleted, expired) as they happen.

    One event a save: {"event", "sid", "key", "at"}, NDJSON flushed per line in a
    pipe or with --format ndjson (json too), a live table of recent events and
    counters on a terminal. Ctrl-C ends it (exit 0). Redis needs keyspace
    notifications (flags Kg$xn, Redis 7+): without them it exits 2 saying how to
    turn them on, or pass --enable. memcached reports no expiry, and deletions only
    from 1.6.20 (watch deletions). A store without a change feed exits 2.

    --where reads each created or changed session's value when its event arrives
    (one read per event) and matches that data. Deleted and expired events carry
    no data: one is reported when the last data this watch saw for that session
    matched.

    \b
    Examples:
      sesstool watch
      sesstool watch --enable --where user_id=42
      sesstool watch --limit 10 --format ndjson | jq .event
    """
    from sesstool.ops.selectors import parse_all
    from sesstool.ops.watch import WatchCounts, watch_records
    from sesstool.render.feed import emit_feed
    from sesstool.stores.base import Capability

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    predicate = parse_all(where)
    store = settings.open_store()
    counts = WatchCounts()
    try:
        store.require(Capability.CHANGE_FEED, "watch")

        def ready() -> None:
            env.info(f"watching {store.describe()} for events under {settings.prefix!r} (Ctrl-C to stop)")

        # Each step of the feed waits at most this long, well inside --timeout:
        # waiting for events is the feed's job, a stalled reply is not.
        idle = min(1.0, settings.timeout / 2)
        records = watch_records(store, settings.prefix, where=predicate, serializer=settings.serializer,
                                limit=limit, idle=idle, enable=enable, on_ready=ready, counts=counts)  # fmt: skip
        try:
            emit_feed(env, records, fmt, counts)
        except KeyboardInterrupt:
            pass  # the way a watch ends: cleanly, exit 0
        finally:
            records.close()
    finally:
        store.close()
