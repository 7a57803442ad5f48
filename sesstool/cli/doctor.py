"""``doctor``: a checklist of the store, its sessions and the app's session settings."""

from __future__ import annotations

import dataclasses
import typing as t

import click

from sesstool.cli.options import format_option, resolve_settings, store_options
from sesstool.env import Environment


@click.command()
@store_options
@click.option("--cookie", metavar="VALUE", default=None,
              help="Trace this browser's session cookie (the value, name=value or a Cookie: header line).")
@click.option("--cookie-name", metavar="NAME", default=None, help="Which cookie of a header line. [default: session]")
@format_option
@click.pass_context
def doctor(ctx: click.Context, /, cookie: str | None, cookie_name: str | None, fmt: str, **_: t.Any) -> None:
    """Check the store, the stored sessions and (with --app) the app's session settings.

    Each line is ok, WARN or FAIL with what to do about it; the exit code is 1 when
    any check fails (an unreachable store too), else 0, so CI can run it. At most
    10,000 sessions are read, and at most 10,000 keys of the rest of the keyspace.
    With --cookie, it traces why that browser's session is or is not found: which
    key verifies it, the key it names, whether that exists, its TTL, whether it
    decodes, and where it is when it sits under another prefix or database.

    \b
    Examples:
      sesstool doctor
      sesstool doctor --app 'web:create_app()' --format json
      sesstool doctor --app web:app --cookie 'session=IMlgd76J...W0.HigvzOo9...'
    """
    from sesstool.deadline import DeadlineExceeded
    from sesstool.errors import StoreError
    from sesstool.ops import doctor as checks
    from sesstool.ops.doctor_app import check_cookie_flags, check_secret_keys, check_signer
    from sesstool.ops.doctor_trace import CookieContext, trace_cookie
    from sesstool.render.checklist import emit_checklist

    env: Environment = ctx.obj
    settings = resolve_settings(ctx)
    report = checks.Report()
    try:
        store = settings.open_store()
    except (StoreError, DeadlineExceeded) as e:
        report.add("store.reachable", checks.FAIL, f"{e}: check --store and that the server runs")
        store = None
    config = getattr(settings.app, "config", None)
    if store is not None:
        try:
            if checks.check_reachable(report, store, settings.prefix):
                sample = checks.read_sample(store, settings.prefix, settings.serializer)
                checks.check_sessions(report, store, settings.prefix, sample)
                # Flask-Session 0.8 writes msgpack unless SESSION_SERIALIZATION_FORMAT says otherwise.
                app_serializer = (settings.app_serializer or "msgpack") if config is not None else None
                checks.check_sample(report, sample, store.name, app_serializer)
                if config is not None:
                    checks.check_lifetime(report, sample, settings.lifetime)
                if cookie is not None:
                    def open_other(url: str) -> t.Any:
                        return dataclasses.replace(settings, store_url=url, client=None).open_store()

                    use_signer = config.get("SESSION_USE_SIGNER") if config is not None else None
                    trace_cookie(report, store, cookie, CookieContext(
                        settings.prefix, settings.serializer, settings.secret_keys,
                        cookie_name or settings.cookie_name, settings.store_url,
                        None if use_signer is None else bool(use_signer), open_other))
        except (StoreError, DeadlineExceeded) as e:
            report.add("store.failed", checks.FAIL, f"the store failed part way: {e}; run doctor again")
        finally:
            store.close()
    if config is not None:
        check_secret_keys(report, config)
        check_cookie_flags(report, config)
        check_signer(report, config)
    result = report.as_json()
    emit_checklist(env, result, fmt)
    if result["failed"]:
        ctx.exit(1)
