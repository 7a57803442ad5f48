"""``doctor``: a checklist of the store, its sessions and the app's session settings."""

from __future__ import annotations

import dataclasses
import typing as t

import click

from sesstool.cli.options import format_option, resolve_settings, store_options
from sesstool.render.env import Environment


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
    from sesstool.app.config import SUPPORTED_TYPES
    from sesstool.cli.options import given
    from sesstool.ops.diagnose import Subject, diagnose
    from sesstool.ops.doctor_trace import CookieContext
    from sesstool.render.checklist import emit_checklist

    env: Environment = ctx.obj
    settings = resolve_settings(ctx, require_store=False)
    config = getattr(settings.app, "config", None)
    # With --app, the store is the app's, unless it keeps sessions elsewhere (Flask's
    # cookie, or a backend sesstool does not read) and --store names none.
    has_store = config is None or given(ctx, "store_url") or settings.session_type in SUPPORTED_TYPES

    def open_other(url: str) -> t.Any:
        return dataclasses.replace(settings, store_url=url, client=None).open_store()

    report = diagnose(Subject(
        open_store=settings.open_store if has_store else None,
        prefix=settings.prefix, serializer=settings.serializer, config=config,
        app_serializer=settings.app_serializer, lifetime=settings.lifetime, cookie=cookie,
        cookie_context=CookieContext(settings.prefix, settings.serializer, settings.secret_keys,
                                     cookie_name or settings.cookie_name, settings.store_url,
                                     settings.use_signer, open_other),
    )).as_json()
    emit_checklist(env, report, fmt)
    if report["failed"]:
        ctx.exit(1)
