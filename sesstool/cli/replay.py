"""``replay``: run the app's own ``open_session`` (and ``save_session``) for a cookie."""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.options import app_option, format_option, timeout_option
from sesstool.errors import InvalidInput
from sesstool.render.env import Environment

if t.TYPE_CHECKING:
    from sesstool.app.replay import ReplayResult


@click.command("replay")
@app_option
@click.option(
    "--cookie",
    metavar="VALUE",
    help="The session cookie: its value, NAME=VALUE, or a whole Cookie: header.",
)
@click.option("--path", default="/", show_default=True, help="The request path (a query string may follow).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the session and save it (VALUE is JSON when valid JSON; KEY may be dotted).",
)
@click.option("--unset", "unsets", multiple=True, metavar="KEY", help="Remove a key and save the session.")
@click.option("--dry-run", is_flag=True, help="Open the session and apply changes, but do not save.")
@timeout_option
@format_option
@click.pass_obj
def replay(
    env: Environment,
    app_import: str | None,
    cookie: str | None,
    path: str,
    sets: tuple[str, ...],
    unsets: tuple[str, ...],
    dry_run: bool,
    timeout: str | None,
    fmt: str,
) -> None:
    """Ask the app what it sees for a cookie, through its own session interface.

    Runs app.session_interface.open_session for a request to --path carrying the
    cookie; with --set/--unset it changes the session and runs save_session as the
    app would (the store really changes) and prints the Set-Cookie header. Without
    --app or SESSTOOL_APP, FLASK_APP (or .flaskenv) names the app. Unsets apply
    before sets, as with edit.

    \b
    Examples:
      sesstool replay --app myapp:app --cookie 3q2-7wEj...
      sesstool replay --app 'myapp:create_app()' --cookie "$C" --set user_id=42
      sesstool replay --app myapp:app --cookie "$C" --unset cart --dry-run --format json
    """
    from sesstool.app.config import app_import_from_environment, load_app
    from sesstool.app.replay import replay as run_replay
    from sesstool.deadline import DEFAULT_TIMEOUT, deadline, parse_timeout
    from sesstool.ops.edits import parse_change
    from sesstool.render.output import emit_one

    change = parse_change(sets, unsets)
    import_path = app_import or app_import_from_environment()
    if not import_path:
        raise InvalidInput("replay needs the app: give --app IMPORT (or SESSTOOL_APP, FLASK_APP)")
    seconds = DEFAULT_TIMEOUT if timeout is None else parse_timeout(timeout)
    app = load_app(import_path)
    # The app's own store client may have no timeouts at all: bound the whole request.
    with deadline(seconds, f"{import_path}'s session interface"):
        result = run_replay(app, cookie=cookie, path=path, change=change, dry_run=dry_run)
    emit_one(env, result.record(), fmt, human=lambda: _human(result, import_path, path, dry_run))


_REASONS = {
    "no cookie": "no session cookie in the request",
    "unknown id": "the store holds no session under the cookie's id",
    "bad signature": "the cookie's signature does not verify with the app's SECRET_KEY",
    "expired": "the cookie is older than PERMANENT_SESSION_LIFETIME",
    "new": "the app's session interface reports a new session",
}


def _human(result: ReplayResult, import_path: str, path: str, dry_run: bool) -> str:
    from sesstool.codecs.tagged import to_tagged
    from sesstool.ops.records import dumps

    sent = f"{result.cookie_name}={result.cookie}" if result.cookie else "no session cookie"
    rows: list[tuple[str, str]] = [
        ("app", f"{import_path} ({result.interface})"),
        ("request", f"GET {path} with {sent}"),
    ]
    if result.new:
        why = _REASONS.get(result.reason or "", result.reason or "")
        rows.append(("session", f"new: {why}"))
    else:
        rows.append(("session", "existing"))
    if result.sid is not None:
        rows.append(("sid", result.sid + (f"  (key {result.store_key})" if result.store_key else "")))
    rows.append(("data", dumps(to_tagged(result.data))))
    if result.change:
        rows.append(("changes", result.change.describe()))
        rows.append(("saved", "no (--dry-run)" if dry_run else "yes, by save_session"))
        for name, value in result.headers:
            deletes = name.lower() == "set-cookie" and "Max-Age=0" in value
            rows.append((name, value + ("  (the app deletes the cookie)" if deletes else "")))
        if result.saved and not result.headers:
            rows.append(("headers", "none: save_session set no cookie"))
    else:
        rows.append(("saved", "no (nothing to change; give --set or --unset)"))
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)
