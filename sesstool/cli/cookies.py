"""``decode``, ``sign`` and ``crack``: Flask's signed cookie sessions and signed session ids.

Thin commands over :mod:`sesstool.cookies.format` and :mod:`sesstool.cookies.crack`; nothing heavy is
imported until a command runs, so ``sesstool decode`` starts fast.
"""

from __future__ import annotations

import typing as t

import click

from sesstool.cli.options import (
    app_option,
    format_option,
    resolve_settings,
    secret_key_options,
    timeout_option,
    timeout_seconds,
)
from sesstool.errors import InvalidInput, NoKey, NoMatch, SignatureInvalid
from sesstool.ops.records import dumps
from sesstool.render.env import Environment
from sesstool.render.output import emit_one, emit_text
from sesstool.render.terminal import printable

_SALT_HELP = "Signer salt. [default: cookie-session; flask-session for signed session ids]"
_DIGEST_HELP = "HMAC digest (apps with a custom session interface may use sha256). [default: sha1]"


def _read_cookie(env: Environment, cookie: str, cookie_name: str | None) -> str:
    from sesstool.cookies.format import MAX_COOKIE_LENGTH, extract_cookie

    text = env.stdin.read(MAX_COOKIE_LENGTH * 2) if cookie == "-" else cookie
    return extract_cookie(text, cookie_name)


class _Signer(t.NamedTuple):
    keys: list[str | bytes]
    salt: str | None
    digest: str
    cookie_name: str | None


def _signer_settings(
    ctx: click.Context, salt: str | None, digest: str | None, cookie_name: str | None = None
) -> _Signer:
    """Keys, salt, digest and cookie name: options first, then ``--app``'s config and interface."""
    from sesstool.cookies.format import DEFAULT_DIGEST, digest_name

    settings = resolve_settings(ctx, require_store=False)
    if settings.app is not None:
        salt = salt or settings.cookie_salt
        digest = settings.cookie_digest if digest is None else digest
        cookie_name = cookie_name or settings.cookie_name
    return _Signer(list(settings.secret_keys), salt, digest_name(digest or DEFAULT_DIGEST), cookie_name)


def _human(record: dict[str, t.Any]) -> str:
    verified = record["verified"]
    key = record.get("key")
    if verified is None:
        check = "not checked (no --secret-key)"
    elif verified:
        check = f"yes, with the {key} key" if key == "current" else f"yes, with {key}"
    elif record.get("expired") and key:
        check = (
            f"no: signed with the {key} key, but expired" if key == "current" else f"no: signed with {key}, but expired"
        )
    else:
        check = "no"
    issued = record["issued_at"] or "-"
    if record.get("legacy"):
        issued += " (itsdangerous < 1.0 timestamp)"
    lines = [("kind", record["kind"]), ("verified", check), ("issued_at", issued)]
    if record.get("expired") is not None:
        lines.append(("expired", "yes" if record["expired"] else "no"))
    if "sid" in record:
        lines.append(("sid", printable(record["sid"])))
    else:
        lines.append(("compressed", "yes" if record["compressed"] else "no"))
    text = "".join(f"{name:<11} {value}\n" for name, value in lines)
    data = record.get("data")
    if data is not None:
        text += f"data        ({len(data)} key{'' if len(data) == 1 else 's'})\n"
        width = max((len(k) for k in data), default=0)
        text += "".join(f"  {printable(k):<{width}}  {printable(dumps(v))}\n" for k, v in data.items())
    return text


@click.command("decode")
@click.argument("cookie", required=False)
@click.option("--url", metavar="URL", help="Fetch the cookie from the Set-Cookie of this page instead.")
@click.option("--cookie-name", metavar="NAME", help="Which cookie of a header or page. [default: session]")
@secret_key_options
@app_option
@click.option("--salt", default=None, help=_SALT_HELP)
@click.option("--digest", default=None, help=_DIGEST_HELP)
@click.option(
    "--max-age",
    metavar="DURATION",
    help="Report a signature older than this (90, 15m, 31d) as expired.",
)
@timeout_option
@format_option
@click.pass_context
def decode(
    ctx: click.Context,
    /,
    cookie: str | None,
    url: str | None,
    cookie_name: str | None,
    salt: str | None,
    digest: str | None,
    max_age: str | None,
    fmt: str,
    **_: t.Any,
) -> None:
    """Decode a Flask session cookie or a Flask-Session signed id, and verify it.

    COOKIE is the value, `-` for stdin, `name=value`, or a whole `Cookie:` or
    `Set-Cookie:` header line. Exits 1 when a key is given and does not verify.

    \b
    Examples:
      sesstool decode 'eyJ1c2VyX2lkIjo0Mn0.aT8x2A.Xl...' --secret-key "$KEY"
      sesstool decode --url http://127.0.0.1:5000/login --format json
      pbpaste | sesstool decode - --secret-key new --secret-key old
    """
    from sesstool.cookies.fetch import fetch_cookie
    from sesstool.cookies.format import decode_cookie
    from sesstool.durations import parse_duration

    env: Environment = ctx.obj
    if (cookie is None) == (url is None):
        raise InvalidInput("give a COOKIE or --url (one of them)")
    keys, salt, digest, cookie_name = _signer_settings(ctx, salt, digest, cookie_name)
    if url:
        value = fetch_cookie(url, cookie_name, timeout=timeout_seconds(ctx))
    else:
        value = _read_cookie(env, t.cast(str, cookie), cookie_name)
    seconds = parse_duration(max_age) if max_age is not None else None
    result = decode_cookie(value, keys, salt=salt, digest=digest, max_age=seconds)
    record = result.to_record()
    emit_one(env, record, fmt, human=lambda: _human(record))
    if result.expired:
        raise SignatureInvalid(f"signature expired: signed {result.age}s ago, more than --max-age {max_age}")
    if result.verified is False:
        count = len(keys)
        raise SignatureInvalid(f"signature not verified by the {count} key{'s' if count != 1 else ''} given")


@click.command("sign")
@click.argument("data", required=False)
@click.option("--sid", metavar="SID", default=None,
              help="Sign this session id instead (Flask-Session's SESSION_USE_SIGNER cookie value).")
@secret_key_options
@app_option
@click.option("--salt", default=None, help="Signer salt. [default: cookie-session; flask-session with --sid]")
@click.option("--digest", default=None, help=_DIGEST_HELP)
@click.option("--legacy", is_flag=True, help="Write an itsdangerous < 1.0 timestamp (for Flask before 1.0).")
@format_option
@click.pass_context
def sign(
    ctx: click.Context,
    /,
    data: str | None,
    sid: str | None,
    salt: str | None,
    digest: str | None,
    legacy: bool,
    fmt: str,
    **_: t.Any,
) -> None:
    """Make a Flask session cookie from a JSON object, signed with the current key.

    DATA is JSON (`-` for stdin) in sesstool's tagged form, so what `decode --format json`
    prints (its `data`, or the whole record) signs back to an equivalent cookie.
    With --sid, print instead the cookie value a SESSION_USE_SIGNER app sets for
    that session id (`sid.signature`, byte for byte what Flask-Session writes).

    \b
    Examples:
      sesstool sign '{"user_id": 42, "_fresh": true}' --secret-key "$KEY"
      sesstool decode "$COOKIE" --format json | sesstool sign - --secret-key "$KEY"
      sesstool sign --sid 3q2-7wEjRb0... --secret-key "$KEY"
      sesstool sign --sid 3q2-7wEjRb0... --app myapp:app --format json
    """
    import json

    from sesstool.codecs.tagged import from_tagged
    from sesstool.cookies.format import DEFAULT_SALT, sign_cookie

    env: Environment = ctx.obj
    if (data is None) == (sid is None):
        raise InvalidInput("give DATA (a JSON object) or --sid SID (one of them)")
    if sid is not None and legacy:
        raise InvalidInput("--legacy is for cookie sessions; a signed session id has no timestamp")
    # The app's interface salt is its cookie sessions' one: a signed id always uses
    # Flask-Session's own, so --sid only takes an explicit --salt.
    signer = _signer_settings(ctx, salt, digest) if sid is None else _signer_settings(ctx, None, digest)
    if not signer.keys:
        raise NoKey("sign needs a key: --secret-key, --secret-key-file or SESSTOOL_SECRET_KEY")
    if sid is not None:
        _emit_cookie(env, _signed_sid(sid, signer.keys[0], salt, signer.digest), fmt)
        return
    text = env.stdin.read() if data == "-" else t.cast(str, data)
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"DATA is not JSON: {e}") from e
    if isinstance(parsed, dict) and parsed.get("kind") == "flask-cookie" and isinstance(parsed.get("data"), dict):
        parsed = parsed["data"]  # a whole `decode --format json` record
    if not isinstance(parsed, dict):
        raise InvalidInput("DATA must be a JSON object (a session is one)")
    cookie = sign_cookie(
        from_tagged(parsed),
        signer.keys[0],
        salt=signer.salt or DEFAULT_SALT,
        digest=signer.digest,
        legacy=legacy,
    )
    _emit_cookie(env, cookie, fmt)


def _signed_sid(sid: str, key: str | bytes, salt: str | None, digest: str) -> str:
    """``sid.signature`` as Flask-Session signs it with the app's current key only."""
    from sesstool.cookies.format import SID_SALT, sign_sid

    sid = sid.strip()
    if not sid:
        raise InvalidInput("empty session id")
    if not sid.isascii() or not sid.isprintable() or any(ch in sid for ch in ' ;,"\\'):
        # RFC 6265 cookie-octets: a value with these would not come back as sent.
        raise InvalidInput(f"{sid!r} is not a session id a cookie can carry (spaces, ';', ',' ...)")
    return sign_sid(sid, key, salt=salt or SID_SALT, digest=digest)


def _emit_cookie(env: Environment, cookie: str, fmt: str) -> None:
    if fmt == "table":
        emit_text(env, cookie)
    else:
        emit_one(env, {"cookie": cookie}, fmt)


def _progress_reporter(env: Environment) -> tuple[t.Any, t.Callable[[t.Any], None]]:
    """sesstool's stderr progress line, fed candidates, percent and ETA (by bytes read)."""
    from sesstool.render.progress import Progress

    line = Progress(env.stderr, "crack", enabled=bool(env.show_progress), interval=0.25)

    def report(progress: t.Any) -> None:
        extra = ""
        if progress.total_bytes:
            extra = f"{100 * progress.done_bytes / progress.total_bytes:.0f}%"
        if progress.eta is not None:
            extra += f" ETA {progress.eta:,.0f}s"
        line.advance(progress.candidates - line.count, extra)

    return line, report


@click.command("crack")
@click.argument("cookie")
@click.option(
    "--wordlist",
    "-w",
    required=True,
    metavar="FILE",
    help="Candidate keys, one a line (`-` for stdin).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Processes. [default: every core]",
)
@click.option("--cookie-name", metavar="NAME", help="Which cookie of a header line. [default: session]")
@click.option("--salt", default=None, help=_SALT_HELP)
@click.option("--digest", default=None, help=_DIGEST_HELP)
@format_option
@click.pass_context
def crack(
    ctx: click.Context,
    cookie: str,
    wordlist: str,
    jobs: int | None,
    cookie_name: str | None,
    salt: str | None,
    digest: str | None,
    fmt: str,
) -> None:
    """Find the secret key that signed a cookie (or signed session id) in a wordlist.

    Plain wordlists and flask-unsign's quoted ones work; the list is streamed.
    Prints the key and exits 0, or exits 1 when no line matches.

    \b
    Examples:
      sesstool crack 'eyJ1c2VyX2lkIjo0Mn0.aT8x2A.Xl...' --wordlist rockyou.txt
      sesstool crack "$COOKIE" -w keys.txt --jobs 2 --format json
    """
    import io
    import os

    from sesstool.codecs.tagged import to_tagged
    from sesstool.cookies.crack import crack as run_crack
    from sesstool.cookies.crack import target_for
    from sesstool.cookies.format import DEFAULT_DIGEST, digest_name

    env: Environment = ctx.obj
    if cookie == "-" and wordlist == "-":
        raise InvalidInput("COOKIE and --wordlist cannot both be stdin")
    target = target_for(
        _read_cookie(env, cookie, cookie_name),
        salt=salt,
        digest=digest_name(digest or DEFAULT_DIGEST),
    )
    if wordlist == "-":
        stream: t.BinaryIO = getattr(env.stdin, "buffer", None) or io.BytesIO(env.stdin.read().encode("utf-8"))
        size = None
    else:
        try:
            stream = open(wordlist, "rb")  # noqa: SIM115 - closed below
            size = os.fstat(stream.fileno()).st_size
        except OSError as e:
            raise InvalidInput(f"cannot read --wordlist {wordlist}: {e.strerror}") from e
    line, report = _progress_reporter(env)
    try:
        result = run_crack(target, stream, jobs=jobs, total_bytes=size, progress=report if line.enabled else None)
    finally:
        line.finish()
        if wordlist != "-":
            stream.close()
    seconds = round(result.seconds, 3)
    if result.secret_key is None:
        if fmt != "table":
            emit_one(env, {"secret_key": None, "candidates": result.candidates, "seconds": seconds}, fmt)
        raise NoMatch(f"no key in the wordlist matched ({result.candidates:,} candidates in {seconds:g}s)")
    key = result.secret_key
    if fmt == "table":
        emit_text(env, key if isinstance(key, str) else repr(key))
    else:
        emit_one(
            env,
            {"secret_key": to_tagged(key), "candidates": result.candidates, "seconds": seconds},
            fmt,
        )
