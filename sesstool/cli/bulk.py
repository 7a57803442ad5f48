"""Bulk commands: ``purge``, ``export``, ``import``, ``migrate``.

Each takes ``--batch N`` (keys per round trip) and ``--rate N`` (sessions per
second), so it can run against a production store without taking it over.
"""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.inspect import batch_option, reading, warn_other_types, warn_skipped, where_option
from sesstool.cli.options import format_option, pacer_for, rate_option, resolve_settings, store_options
from sesstool.render.env import Environment
from sesstool.render.output import Column, emit_many, emit_one, emit_text
from sesstool.render.progress import Progress

if t.TYPE_CHECKING:
    from sesstool.ops.migrate import MigrateReport
    from sesstool.ops.purge import Criteria, PurgeResult


# -- purge ---------------------------------------------------------------------------------


@click.command()
@store_options
@click.option("--expired", is_flag=True,
              help="Sessions past their lifetime: on Redis, keys without a TTL idle longer than --lifetime; "
                   "on memcached, items past their expiry that the servers still hold (freed by the LRU crawler); "
                   "on SQL and file stores, sessions whose expiry has passed (as flask session_cleanup does for SQL).")
@click.option("--lifetime", metavar="DURATION", default=None,
              help="Session lifetime for --expired. [default: the app's PERMANENT_SESSION_LIFETIME, else 31d]")
@click.option("--empty", is_flag=True, help="Sessions holding nothing but Flask's bookkeeping ({} or _permanent).")
@click.option("--idle", metavar="DURATION", default=None, help="Sessions not read or written for longer than this.")
@where_option
@click.option("--all", "everything", is_flag=True, help="Every session under the prefix.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--backup", metavar="FILE", default=None,
              help="Write the export (ndjson) of each selected session to FILE before deleting it.")
@batch_option
@rate_option
@format_option
@click.pass_context
def purge(ctx: click.Context, /, expired: bool, lifetime: str | None, empty: bool, idle: str | None,
          where: tuple[str, ...], everything: bool, dry_run: bool, assume_yes: bool, backup: str | None,
          batch: int, rate: int | None, fmt: str, **_: t.Any) -> None:
    """Delete every session that matches all the given selectors.

    A session that changes (or is refreshed) after being selected is kept. Without
    --yes, purge counts the matches and asks on a terminal; with no terminal it
    refuses (exit 2) unless --dry-run. --expired/--idle alone never read a value,
    so their dry runs leave idle times as they were. --all alone unlinks every key under the
    prefix as SCAN finds it, without reading values. If the store fails part way,
    purge exits 3 and says how many sessions it deleted; run it again to finish.
    Sessions that cannot be decoded never match --where/--empty; --backup writes
    them as raw bytes; the JSON summary counts them as "undecodable" (exit 0).

    \b
    Examples:
      sesstool purge --empty --dry-run
      sesstool purge --expired --lifetime 7d --yes
      sesstool purge --idle 30d --where '!user_id' --backup idle.ndjson --yes
      sesstool purge --where user_id=42 --yes --format json
      sesstool purge --all --yes --batch 500 --rate 20000
    """
    from sesstool.durations import parse_duration
    from sesstool.errors import InvalidInput
    from sesstool.ops.purge import DEFAULT_LIFETIME, Criteria, reclaims_expired
    from sesstool.ops.selectors import parse_all

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    criteria = Criteria(
        expired=expired,
        lifetime=parse_duration(lifetime) if lifetime is not None else (settings.lifetime or DEFAULT_LIFETIME),
        empty=empty,
        idle=parse_duration(idle) if idle is not None else None,
        where=parse_all(where),
        where_text=where,
        everything=everything,
    )
    if not criteria.given():
        raise click.UsageError("purge needs at least one selector: --expired, --empty, --idle, --where or --all")
    if not (assume_yes or dry_run or env.stdin_isatty):
        raise InvalidInput("purge deletes sessions: pass --yes to confirm (there is no terminal to ask on), "
                           "or --dry-run to preview")
    store = settings.open_store(writes=None if dry_run else "purge")
    try:
        criteria = criteria.on(store)
    except BaseException:
        store.close()
        raise
    if dry_run and _dry_run_touches(criteria):
        env.warn("--idle/--expired with --where/--empty reads the values of idle sessions, which resets "
                 "their idle time: a purge right after this dry run will not see them as idle")
    if dry_run and reclaims_expired(store, criteria):
        env.warn(f"{store.describe()} cannot count items past their expiry without freeing them: the dry run "
                 "reports 0")
    try:
        confirmed = assume_yes or dry_run or _confirm(env, store, settings.prefix, criteria, settings.serializer, batch)
        if not confirmed:
            return
        result = _run_purge(env, store, settings.prefix, criteria, settings.serializer, dry_run, backup, batch, rate)
    finally:
        store.close()
    emit_one(env, result.as_json(), fmt, human=lambda: _purge_summary(result, backup))
    how = "--where/--empty cannot match them: they were kept" if criteria.needs_data else "backed up as raw bytes"
    warn_skipped(env, result.other_types, settings.prefix, result.undecodable, how)


def _confirm(env: Environment, store: t.Any, prefix: str, criteria: Criteria, serializer: str, batch: int) -> bool:
    """Count the matches (a dry run), then ask on the terminal.

    Counting idle sessions by their data would read them and reset their idle time,
    so that they would no longer match: then purge asks without a count.
    """
    from sesstool.ops.purge import reclaims_expired

    what = "sessions"
    question = f"Delete {what} under {prefix!r} ({criteria.describe()}) from {store.describe()}? [y/N] "
    if reclaims_expired(store, criteria):
        # memcached frees such items for every prefix at once, and cannot count them first.
        question = f"Free every item past its expiry (any prefix) on {store.describe()}? [y/N] "
    elif not _dry_run_touches(criteria):
        preview = _run_purge(env, store, prefix, criteria, serializer, True, None, batch, None, label="counting")
        if preview.matched == 0:
            return True  # nothing to delete: the real run reports 0 without asking
        question = question.replace(what, f"{preview.matched:,} sessions", 1)
    env.stderr.write(question)
    env.stderr.flush()
    answer = env.stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    env.info("aborted: nothing deleted")
    return False


def _dry_run_touches(criteria: Criteria) -> bool:
    return criteria.min_idle is not None and criteria.needs_data


def _run_purge(env: Environment, store: t.Any, prefix: str, criteria: Criteria, serializer: str,
               dry_run: bool, backup: str | None, batch: int, rate: int | None,
               label: str | None = None) -> PurgeResult:
    from sesstool.ops.purge import purge as run
    from sesstool.ops.transfer import BackupFile
    from sesstool.stores.capabilities import Capability

    progress = Progress(env.stderr, label or ("matching" if dry_run else "purging"), enabled=env.show_progress)
    ids = store.supports(Capability.ENUMERABLE_IDS)
    writer = BackupFile(backup, prefix, ids=ids) if backup and not dry_run else None

    deleted = 0

    def on_batch(result: PurgeResult) -> None:
        nonlocal deleted
        deleted = result.deleted
        progress.advance(result.scanned - progress.count,
                         f"matched {result.matched:,}" + ("" if dry_run else f", deleted {result.deleted:,}"))

    try:
        return run(store, prefix, criteria, serializer=serializer, dry_run=dry_run, batch=batch,
                   pacer=pacer_for(rate), on_selected=writer.write if writer else None, on_batch=on_batch)
    except KeyboardInterrupt:
        progress.finish()
        if not dry_run:
            env.info(f"purge interrupted after deleting {deleted:,} sessions")
        raise
    finally:
        progress.finish()
        if writer is not None:
            writer.close()


def _purge_summary(result: PurgeResult, backup: str | None) -> str:
    if result.dry_run:
        return f"would delete {result.matched:,} sessions (dry run; {result.scanned:,} keys scanned)\n"
    text = f"deleted {result.deleted:,} of {result.matched:,} matched sessions ({result.scanned:,} keys scanned)"
    if result.kept:
        text += f"; kept {result.kept:,} that changed after being selected"
    if backup:
        text += f"; backup in {backup}"
    return text + "\n"


# -- export / import ---------------------------------------------------------------------------


@click.command()
@store_options
@where_option
@batch_option
@rate_option
@click.option("--format", "fmt", type=click.Choice(["ndjson", "json"]), default="ndjson", show_default=True,
              help="ndjson: one record a line (what import reads); json: one array. An export holds "
              "data, which a table or CSV cannot show losslessly.")
@click.pass_context
def export(ctx: click.Context, /, where: tuple[str, ...], batch: int, rate: int | None, fmt: str,
           **_: t.Any) -> None:
    """Write sessions as ndjson records with data and TTL, for backup or moving.

    Values JSON cannot hold (datetime, tuple, Markup, ...) use the lossless tagged
    form; a record also carries "raw" (base64 of the stored bytes) when its data
    alone would not give those bytes back. `import` restores them exactly. A
    session that cannot be decoded is written as unknown with its raw bytes, and a
    warning at the end counts them (exit 0).

    \b
    Examples:
      sesstool export > sessions.ndjson
      sesstool export --where user_id=42 --rate 5000 | gzip > user42.ndjson.gz
    """
    from sesstool.ops.transfer import iter_export

    env: Environment = ctx.obj
    with reading(ctx, where, "exported", batch=batch, rate=rate) as (scan, predicate):
        emit_many(env, iter_export(scan, predicate), fmt, [])
    warn_other_types(env, scan.counters, scan.prefix, selected=predicate is not None)


@click.command("import")
@store_options
@click.argument("source", metavar="FILE|-")
@click.option("--skip-existing", is_flag=True, help="Keep sessions that already exist instead of overwriting them.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid records and count the invalid lines, instead of importing nothing.")
@batch_option
@rate_option
@format_option
@click.pass_context
def import_(ctx: click.Context, /, source: str, skip_existing: bool, skip_invalid: bool, batch: int,
            rate: int | None, fmt: str, **_: t.Any) -> None:
    """Write exported records back, with their TTL and serializer.

    Each record goes under the prefix plus its sid. The whole file is checked
    first: when a line is invalid, nothing is written (exit 2, or 4 when its data
    cannot be encoded) and the error names its line; --skip-invalid imports the
    valid records instead and counts the others.

    \b
    Examples:
      sesstool import sessions.ndjson
      gunzip -c user42.ndjson.gz | sesstool import - --skip-existing
    """
    from sesstool.ops.importing import import_records

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    # The store first: one that cannot write is refused before stdin is read.
    store = settings.open_store(writes="import")
    try:
        handle = _open_import_source(env, source)
        progress = Progress(env.stderr, "imported", enabled=env.show_progress)
        try:
            result = import_records(store, handle, settings.prefix, skip_existing=skip_existing,
                                    skip_invalid=skip_invalid, batch=batch, pacer=pacer_for(rate),
                                    on_batch=progress.advance)
        finally:
            progress.finish()
            handle.close()
    finally:
        store.close()
    skipped = f" ({result.skipped:,} skipped: already present)" if skip_existing else ""
    invalid = f" ({result.invalid:,} invalid lines skipped)" if result.invalid else ""
    emit_one(env, result.as_json(), fmt, human=lambda: f"imported {result.imported:,} sessions{skipped}{invalid}\n")


def _open_import_source(env: Environment, source: str) -> t.BinaryIO:
    """The import file as seekable bytes (import reads it twice: check, then write).

    stdin is spooled to an anonymous temporary file (unlinked at once, 0600).
    """
    import io
    import shutil
    import tempfile

    from sesstool.errors import InvalidInput

    if source != "-":
        try:
            return open(source, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise InvalidInput(f"cannot read {source}: {e.strerror or e}") from e
    stdin = getattr(env.stdin, "buffer", None)
    if stdin is None:
        return io.BytesIO(env.stdin.read().encode("utf-8", "surrogateescape"))
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
    shutil.copyfileobj(stdin, spool)
    spool.seek(0)
    return t.cast(t.BinaryIO, spool)


# -- migrate --------------------------------------------------------------------------------------

PROBLEM_COLUMNS = [
    Column("path", "PATH"),
    Column("type", "TYPE"),
    Column("sessions", "SESSIONS", justify="right"),
    Column("examples", "EXAMPLE", lambda examples: examples[0] if examples else ""),
]


@click.command()
@store_options
@click.option("--to", "target", type=click.Choice(["msgpack", "json"]), required=True,
              help="The format to re-encode sessions in.")
@click.option("--dry-run", is_flag=True,
              help="Write nothing: count sessions per serializer and name every value the target cannot hold.")
@click.option("--lossy", is_flag=True,
              help="Convert values the target cannot hold as documented (datetime to ISO string, "
              "tuple/set to list, Markup to str, ...) instead of leaving those sessions.")
@batch_option
@rate_option
@format_option
@click.pass_context
def migrate(ctx: click.Context, /, target: str, dry_run: bool, lossy: bool, batch: int, rate: int | None,
            fmt: str, **_: t.Any) -> None:
    """Re-encode sessions in place (for example pickle from Flask-Session < 0.7), keeping TTL.

    Atomic per session. A session holding values the target cannot hold exactly
    (Flask-Session 0.8's msgpack rejects Markup and turns datetime and tuple into
    other types) is left as it is and those values are listed, unless --lossy.
    Run --dry-run before upgrading Flask-Session to learn what would break.
    Sessions that cannot be decoded are left as they are and counted (exit 0).

    \b
    Examples:
      sesstool migrate --to msgpack --dry-run
      sesstool migrate --to msgpack --rate 2000
      sesstool migrate --to json --lossy --format json
    """
    from sesstool.ops.migrate import migrate as run

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    store = settings.open_store(writes=None if dry_run else "migrate")
    progress = Progress(env.stderr, "checked" if dry_run else "migrating", enabled=env.show_progress)

    def on_batch(report: MigrateReport) -> None:
        progress.advance(report.scanned - progress.count, f"{report.migrated:,} re-encoded")

    try:
        report = run(store, settings.prefix, target, serializer=settings.serializer, dry_run=dry_run, lossy=lossy,
                     batch=batch, pacer=pacer_for(rate), on_batch=on_batch)
    finally:
        progress.finish()
        store.close()
    summary = report.as_json()
    if fmt in ("json", "ndjson"):
        emit_one(env, summary, fmt)
    elif fmt == "csv":
        emit_many(env, summary["problems"], fmt, PROBLEM_COLUMNS)
    else:
        emit_text(env, _migrate_summary(summary))
        if summary["problems"]:
            emit_many(env, summary["problems"], "table", PROBLEM_COLUMNS)
    warn_skipped(env, report.other_types, settings.prefix, summary["undecodable"], "left as they are")


def _migrate_summary(summary: dict[str, t.Any]) -> str:
    target = summary["to"]
    by_serializer = ", ".join(f"{name} {n:,}" for name, n in summary["serializers"].items()) or "-"
    verb = "would re-encode" if summary["dry_run"] else "re-encoded"
    count = summary["convertible"] if summary["dry_run"] else summary["migrated"]
    lines = [
        f"sessions scanned   {summary['scanned']:,}",
        f"by serializer      {by_serializer}",
        f"already {target:<10} {summary['already']:,}",
        f"{verb:<18} {count:,}" + (f" ({summary['converted_lossily']:,} lossily)" if summary["lossy"] else ""),
        f"left as they are   {summary['blocked']:,} (values {target} cannot hold)",
    ]
    if summary["undecodable"]:
        lines.append(f"undecodable        {summary['undecodable']:,}")
    if summary["changed_meanwhile"]:
        lines.append(f"kept changing      {summary['changed_meanwhile']:,} (the app kept writing them; run again)")
    if summary["problems"]:
        lines.append(f"\nValues {target} cannot hold:")
    return "\n".join(lines)
