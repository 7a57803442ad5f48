"""``stats``: the store's sessions in figures; ``--by FIELD`` and ``--fields`` rank them."""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.inspect import batch_option, reading, warn_other_types, where_option
from sesstool.cli.options import format_option, rate_option, store_options
from sesstool.render.env import Environment


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
    from sesstool.ops.listing import iter_decoded
    from sesstool.ops.stats import StatsAccumulator
    from sesstool.render.charts import emit_ranked, emit_stats

    env: Environment = ctx.obj
    if by_field is not None and by_fields:
        raise click.UsageError("give --by FIELD or --fields, not both")
    if top is not None and by_field is None and not by_fields:
        raise click.UsageError("--top needs --by FIELD or --fields")
    accumulator: StatsAccumulator | ByValue | ByField
    accumulator = ByValue(by_field) if by_field is not None else ByField() if by_fields else StatsAccumulator()
    with reading(ctx, where, "scanned", batch=batch, rate=rate) as (scan, predicate):
        for decoded in iter_decoded(scan, predicate):
            accumulator.add(decoded)
    counters = scan.counters
    if isinstance(accumulator, StatsAccumulator):
        emit_stats(env, accumulator.result(undecodable=counters.undecodable), fmt, accumulator.histograms)
    else:
        result = accumulator.result(top or DEFAULT_TOP, undecodable=counters.undecodable)
        emit_ranked(env, result, fmt)
        counters.undecodable = result["undecodable"]  # the ranking's count, which the warning must agree with
    warn_other_types(env, counters, scan.prefix, selected=predicate is not None)
