"""``doctor``'s whole run: which checks apply, in which order, with what they need.

The checks themselves live in :mod:`sesstool.ops.doctor` (store and sessions),
:mod:`sesstool.ops.doctor_app` (the app's settings) and
:mod:`sesstool.ops.doctor_trace` (``--cookie``).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sesstool.deadline import DeadlineExceeded
from sesstool.errors import StoreError
from sesstool.ops import doctor as checks
from sesstool.ops.doctor_app import check_cookie_flags, check_secret_keys, check_signer
from sesstool.ops.doctor_trace import CookieContext, trace_cookie
from sesstool.stores.base import Store

_StoreErrors = (StoreError, DeadlineExceeded)
#: Flask-Session 0.8 writes msgpack unless SESSION_SERIALIZATION_FORMAT says otherwise.
DEFAULT_APP_SERIALIZER = "msgpack"


@dataclass
class Subject:
    """What ``doctor`` examines.

    :param open_store: opens the store (``None``: there is none to check, e.g. an app
        keeping its sessions in Flask's signed cookie).
    :param config: the app's ``app.config`` with ``--app``, else None.
    :param cookie: with ``cookie_context``, the cookie to trace.
    """

    open_store: t.Callable[[], Store] | None
    prefix: str
    serializer: str
    config: t.Mapping[str, t.Any] | None = None
    app_serializer: str | None = None
    lifetime: int | None = None
    cookie: str | None = None
    cookie_context: CookieContext | None = None


def diagnose(subject: Subject) -> checks.Report:
    report = checks.Report()
    if subject.open_store is not None:
        _store_checks(report, subject, subject.open_store)
    elif subject.config is not None:
        session_type = subject.config.get("SESSION_TYPE")
        if session_type in (None, "null"):
            report.add("store.kind", checks.OK, "the app keeps sessions in Flask's signed cookie: no store to "
                       "check (`sesstool decode COOKIE` reads one)")
        else:
            report.add("store.kind", checks.WARN, f"SESSION_TYPE {session_type!r} is not a store sesstool "
                       "reads (redis, memcached, sqlalchemy): its sessions were not checked")
        if subject.cookie is not None:
            report.add("cookie.trace", checks.WARN, "no store to trace the cookie in: `sesstool decode COOKIE "
                       "--app ...` verifies a cookie session; give --store for a server-side one")
    if subject.config is not None:
        check_secret_keys(report, subject.config)
        check_cookie_flags(report, subject.config)
        check_signer(report, subject.config)
    return report


def _store_checks(report: checks.Report, subject: Subject, open_store: t.Callable[[], Store]) -> None:
    try:
        store = open_store()
    except _StoreErrors as e:
        report.add("store.reachable", checks.FAIL, f"{e}: check --store and that the server runs")
        return
    try:
        if not checks.check_reachable(report, store, subject.prefix):
            return
        sample = checks.read_sample(store, subject.prefix, subject.serializer)
        checks.check_sessions(report, store, subject.prefix, sample)
        app_serializer = (subject.app_serializer or DEFAULT_APP_SERIALIZER) if subject.config is not None else None
        checks.check_sample(report, sample, store.value_limit, app_serializer, store.value_serializer)
        if subject.config is not None:
            checks.check_lifetime(report, sample, subject.lifetime)
        if subject.cookie is not None and subject.cookie_context is not None:
            trace_cookie(report, store, subject.cookie, subject.cookie_context)
    except _StoreErrors as e:
        report.add("store.failed", checks.FAIL, f"the store failed part way: {e}; run doctor again")
    finally:
        store.close()
