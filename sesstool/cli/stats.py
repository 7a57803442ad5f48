"""``stats``: the store's sessions in figures; ``--by FIELD`` and ``--fields`` rank them."""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.inspect import batch_option, warn_other_types, where_option
from sesstool.cli.options import format_option, paced, rate_option, resolve_settings, store_options
from sesstool.render.env import Environment
from sesstool.render.progress import Progress


@click.command()
@store_options
@where_option
@click.option("--by", "by_field", metavar="FIELD", default=None,
              help="Sessions and bytes per value of FIELD (a dotted path, as in --where), most sessions first.")
@click.option("--fields", "by_fields", is_flag=True,
              help="Bytes per top-level field over all sessions, most bytes first.")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="N",
              help="How many values (--by) or fields (--fields) to list. [default: 20]")
@batch_option
@rate_option
@format_option
@click.pass_context
def stats(ctx: click.Context, /, where: tuple[str, ...], by_field: str | None, by_fields: bool, top: int | None,
          batch: int, rate: int | None, fmt: str, **_: t.Any) -> None:
    """Count sessions by serializer; sessions without expiry; size and TTL percentiles.

    --by FIELD lists who holds the sessions (per user with --by _user_id), --fields
    what makes them big. Both read every session once in bounded memory: counts are
    exact up to 100,000 distinct values, then approximate, and the JSON says so
    ("approximate": true, "error": N, the most a count may be under). On a terminal
    the figures come with bar charts; pipes and --format json get numbers only.
    Sessions that cannot be decoded count as unknown and as "undecodable" (exit 0,
    with a warning).

    \b
    Examples:
      sesstool stats
      sesstool stats --where user_id --format json
      sesstool stats --by _user_id --top 10
      sesstool stats --by cart.currency --format json
      sesstool stats --fields
      sesstool stats --rate 5000
    """
    from sesstool.ops.fieldstats import DEFAULT_TOP, ByField, ByValue
    from sesstool.ops.listing import ScanCounters, iter_decoded
    from sesstool.ops.selectors import parse_all
    from sesstool.ops.stats import StatsAccumulator
    from sesstool.render.charts import emit_ranked, emit_stats

    env: Environment = ctx.obj
    if by_field is not None and by_fields:
        raise click.UsageError("give --by FIELD or --fields, not both")
    if top is not None and by_field is None and not by_fields:
        raise click.UsageError("--top needs --by FIELD or --fields")
    accumulator: StatsAccumulator | ByValue | ByField
    accumulator = ByValue(by_field) if by_field is not None else ByField() if by_fields else StatsAccumulator()
    settings = resolve_settings(ctx)
    predicate = parse_all(where)
    store = settings.open_store()
    counters = ScanCounters()
    progress = Progress(env.stderr, "scanned", enabled=env.show_progress)
    try:
        for decoded in iter_decoded(store, settings.prefix, serializer=settings.serializer, where=predicate,
                                    counters=counters, batch=batch, on_batch=paced(progress.advance, rate)):
            accumulator.add(decoded)
    finally:
        progress.finish()
        store.close()
    if isinstance(accumulator, StatsAccumulator):
        emit_stats(env, accumulator.result(undecodable=counters.undecodable), fmt, accumulator.histograms)
        undecodable = counters.undecodable
    else:
        result = accumulator.result(top or DEFAULT_TOP, undecodable=counters.undecodable)
        emit_ranked(env, result, fmt)
        undecodable = result["undecodable"]
    counters.undecodable = undecodable
    warn_other_types(env, counters, settings.prefix, selected=predicate is not None)
