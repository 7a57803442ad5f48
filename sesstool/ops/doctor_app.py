"""``doctor --app``: the app's secret key and session cookie settings.

Works on ``app.config`` as a mapping, so it needs no Flask import. No message ever
contains a key: a weak key is named by its place (``SECRET_KEY``, fallback 1).
"""

from __future__ import annotations

import typing as t

from sesstool.ops.doctor import FAIL, OK, WARN, Report

#: Keys that tutorials, templates and generators put in config files (compared
#: case-insensitively, spaces, "-" and "_" ignored). Short, on purpose: anything
#: under MIN_KEY_BYTES is weak anyway.
WELL_KNOWN_KEYS = frozenset({
    "dev", "devkey", "development", "developmentkey", "secret", "secretkey", "mysecret", "mysecretkey",
    "yoursecretkey", "yoursecretkeyhere", "supersecret", "supersecretkey", "topsecret", "changeme",
    "changethis", "changeit", "pleasechangeme", "changemeinproduction", "replaceme", "default", "defaultkey",
    "password", "test", "testing", "testkey", "flask", "flasksecret", "flasksecretkey", "key", "insecure",
    "notsecret", "notasecret", "abc123", "123456", "1234567890", "qwerty", "xxx", "todo", "fixme",
    "thisisasecret", "thisisnotasecret", "keepitsecret", "keepitsecretkeepitsafe", "s3cr3t", "hardtoguessstring",
    "hardtoguess", "youwillneverguess", "unsafe", "sessionsecret", "cookiesecret", "secretkeyhere",
})
MIN_KEY_BYTES = 16
#: Fewer distinct characters than this is a pattern, not a key (``aaaa...``, ``1212...``).
MIN_DISTINCT = 8


def weakness(key: str | bytes) -> str | None:
    """Why ``key`` is weak (never quoting it), or None."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    folded = raw.decode("utf-8", "replace").lower()
    for ch in " -_.":
        folded = folded.replace(ch, "")
    if folded in WELL_KNOWN_KEYS:
        return "a well-known default or placeholder"
    if len(raw) < MIN_KEY_BYTES:
        return f"only {len(raw)} bytes long"
    if len(set(raw)) < MIN_DISTINCT:
        return f"made of only {len(set(raw))} distinct characters"
    return None


def check_secret_keys(report: Report, config: t.Mapping[str, t.Any]) -> None:
    """``app.secret_key``: present, and neither short, repetitive nor well known."""
    current = config.get("SECRET_KEY")
    fallbacks = [k for k in (config.get("SECRET_KEY_FALLBACKS") or ()) if isinstance(k, (str, bytes))]
    if not current:
        report.add("app.secret_key", FAIL, "SECRET_KEY is not set: Flask cannot sign cookies (and Flask-Session "
                   "cannot sign ids); set a random one, e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
        return
    problems = []
    for label, key in [("SECRET_KEY", current), *((f"fallback {i}", k) for i, k in enumerate(fallbacks, 1))]:
        if not isinstance(key, (str, bytes)):
            continue
        why = weakness(key)
        if why:
            problems.append(f"{label} is {why}")
    if problems:
        report.add("app.secret_key", FAIL, "; ".join(problems) + ": anyone who guesses it forges sessions "
                   "(`sesstool crack` tries wordlists); set a random key of 32 bytes or more, e.g. "
                   "python -c 'import secrets; print(secrets.token_hex(32))'")
    else:
        extra = f" and {len(fallbacks)} fallback(s)" if fallbacks else ""
        report.add("app.secret_key", OK, f"SECRET_KEY{extra}: long, varied and not a well-known default")


def check_cookie_flags(report: Report, config: t.Mapping[str, t.Any]) -> None:
    """``app.cookie_secure``, ``app.cookie_httponly``, ``app.cookie_samesite``."""
    secure = bool(config.get("SESSION_COOKIE_SECURE"))
    if secure:
        report.add("app.cookie_secure", OK, "SESSION_COOKIE_SECURE is on: the cookie only travels over HTTPS")
    else:
        report.add("app.cookie_secure", WARN, "SESSION_COOKIE_SECURE is off: the session cookie also travels over "
                   "plain HTTP, where it can be read; set SESSION_COOKIE_SECURE=True when the app is served by HTTPS")
    if config.get("SESSION_COOKIE_HTTPONLY", True):
        report.add("app.cookie_httponly", OK, "SESSION_COOKIE_HTTPONLY is on: page scripts cannot read the cookie")
    else:
        report.add("app.cookie_httponly", FAIL, "SESSION_COOKIE_HTTPONLY is off: any script injected into a page "
                   "can steal the session; set SESSION_COOKIE_HTTPONLY=True")
    samesite = config.get("SESSION_COOKIE_SAMESITE")
    text = str(samesite).lower() if samesite is not None else None
    if text in ("lax", "strict"):
        report.add("app.cookie_samesite", OK, f"SESSION_COOKIE_SAMESITE is {samesite!r}")
    elif text == "none" and not secure:
        report.add("app.cookie_samesite", FAIL, "SESSION_COOKIE_SAMESITE is 'None' without SESSION_COOKIE_SECURE: "
                   "browsers reject such a cookie, so every request starts a new session; set Secure, or 'Lax'")
    elif text == "none":
        report.add("app.cookie_samesite", WARN, "SESSION_COOKIE_SAMESITE is 'None': the cookie goes with "
                   "cross-site requests (CSRF); use 'Lax' unless the app is embedded in other sites")
    else:
        report.add("app.cookie_samesite", WARN, "SESSION_COOKIE_SAMESITE is not set: browsers differ in what "
                   "they then send cross-site; set SESSION_COOKIE_SAMESITE='Lax'")


def check_signer(report: Report, config: t.Mapping[str, t.Any]) -> None:
    """``app.signer``: ``SESSION_USE_SIGNER``, and the id length it would protect."""
    length = config.get("SESSION_ID_LENGTH", 32)
    short = isinstance(length, int) and length < 16
    if config.get("SESSION_USE_SIGNER") and config.get("SECRET_KEY_FALLBACKS"):
        report.add("app.signer", WARN, "session ids are signed (SESSION_USE_SIGNER) and SECRET_KEY_FALLBACKS is "
                   "set, but Flask-Session's signer ignores fallbacks: every id signed with an older key is a lost "
                   "session; keep the old key current until those expire, or turn the (deprecated) signer off")
    elif config.get("SESSION_USE_SIGNER"):
        report.add("app.signer", OK, "session ids are signed (SESSION_USE_SIGNER, deprecated in Flask-Session "
                   "0.8): rotating SECRET_KEY logs everyone out, as the signer ignores SECRET_KEY_FALLBACKS")
    elif short:
        report.add("app.signer", WARN, f"session ids are unsigned and only {length} random bytes "
                   "(SESSION_ID_LENGTH): raise it to 32 so ids cannot be guessed")
    else:
        report.add("app.signer", OK, "session ids are unsigned (SESSION_USE_SIGNER off): fine with "
                   f"{length}-byte random ids")
