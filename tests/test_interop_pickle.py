"""Pickle-era sessions written by the real Flask-Session 0.5.0 and 0.4.0, read by sesstool.

The old apps run in their own venvs (tests/oldapps.py). Their sessions are pickles
of ``dict(session)`` stored with ``SETEX`` (Redis) or ``set`` (memcached, pickle
protocol 0), under uuid4 ids.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import math
import typing as t
import uuid

import pytest

from sesstool.codecs import serializers
from sesstool.codecs.tagged import to_tagged
from sesstool.codecs.values import Markup, OpaqueObject
from tests.conftest import CliRunner
from tests.oldapps import PICKLE_ONLY, SECRET, VERSIONS, read_old_session, write_old_sessions
from tests.servers import ServerProcess

pytestmark = [pytest.mark.interop, pytest.mark.network]

THIRTY_ONE_DAYS = 31 * 24 * 3600
JSON_DATA = [
    {"user_id": 42, "name": "Zoë", "roles": ["admin"], "prefs": {"theme": "dark", "size": 1.5}},
    {"csrf_token": "abc123", "flag": False, "maybe": [None]},  # a top-level None deletes the key
]
CART_STATE = {"items": ["book", "pen"], "coupon": None}


def same(a: t.Any, b: t.Any) -> bool:
    """Equal and of the same types all the way down (so a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def expected_session(data: dict[str, t.Any], pickle_only: bool = False) -> dict[str, t.Any]:
    # Flask-Session 0.4/0.5 sessions are permanent by default: _permanent is stored.
    return {"_permanent": True, **data, **(PICKLE_ONLY if pickle_only else {})}


@pytest.mark.parametrize("version", VERSIONS)
def test_decode_gives_pickle_and_the_exact_data(version: str, redis_url: str, redis_client: t.Any) -> None:
    written = write_old_sessions(version, redis_url, JSON_DATA, pickle_only=True)
    assert len(written) == len(JSON_DATA)
    for session, data in zip(written, JSON_DATA, strict=True):
        uuid.UUID(session["sid"], version=4)  # Flask-Session < 0.7 ids are uuid4
        assert session["cookie"] == session["sid"]
        raw = redis_client.get(f"session:{session['sid']}")
        assert raw[:2] == b"\x80\x04"  # pickle.dumps' default protocol on Python 3.8+
        assert 0 < redis_client.ttl(f"session:{session['sid']}") <= THIRTY_ONE_DAYS  # SETEX
        name, decoded = serializers.decode(raw)
        assert name == "pickle"
        expected = expected_session(data, pickle_only=True)
        assert decoded is not None and same(decoded, expected), decoded
        # The types that only pickle can hold came back as themselves.
        assert type(decoded["html"]) is Markup
        assert type(decoded["pair"]) is tuple and type(decoded["pair"][2]) is tuple
        assert type(decoded["ordered"]) is collections.OrderedDict
        assert list(decoded["ordered"]) == ["z", "a"]
        assert decoded["when_utc"].tzinfo == dt.timezone.utc
        assert decoded["ids"] == {1: "one", 2: "two"}
        # An explicit --serializer pickle reads it too; msgpack and json do not.
        assert serializers.decode(raw, "pickle") == ("pickle", decoded)
        assert serializers.decode(raw, "msgpack") == ("unknown", None)


@pytest.mark.parametrize("version", VERSIONS)
def test_an_object_of_the_apps_own_class_is_shown_not_imported(
    version: str, redis_url: str, redis_client: t.Any
) -> None:
    (session,) = write_old_sessions(version, redis_url, [{"user_id": 7}], app_object=True)
    name, decoded = serializers.decode(redis_client.get(f"session:{session['sid']}"))
    assert name == "pickle" and decoded is not None
    assert decoded["user_id"] == 7
    cart = decoded["cart"]
    assert cart == OpaqueObject("__main__.Cart", state=CART_STATE, new=True)
    assert to_tagged(cart) == {"$object": {"class": "__main__.Cart", "args": [], "state": CART_STATE, "new": True}}


@pytest.mark.parametrize("version", VERSIONS)
def test_signed_ids_and_a_custom_prefix(version: str, redis_url: str, redis_client: t.Any) -> None:
    (session,) = write_old_sessions(version, redis_url, [{"user_id": 1}], use_signer=True, prefix="myapp:")
    sid, signature = session["cookie"].rsplit(".", 1)
    assert sid == session["sid"] and signature
    assert redis_client.exists(f"session:{sid}") == 0
    raw = redis_client.get(f"myapp:{sid}")
    assert serializers.decode(raw) == ("pickle", {"_permanent": True, "user_id": 1})


# -- through the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_list_shows_pickle_and_the_tagged_data(
    version: str, redis_url: str, redis_client: t.Any, cli: CliRunner
) -> None:
    written = write_old_sessions(version, redis_url, JSON_DATA, pickle_only=True)
    result = cli("list", "--store", redis_url, "--format", "json", "--data")
    assert result.exit_code == 0, result.stderr
    records = {record["sid"]: record for record in result.json()}
    assert set(records) == {session["sid"] for session in written}
    for session, data in zip(written, JSON_DATA, strict=True):
        record = records[session["sid"]]
        key = f"session:{session['sid']}"
        assert record["key"] == key
        assert record["serializer"] == "pickle"
        assert record["size"] == len(redis_client.get(key))
        assert 0 < record["ttl"] <= THIRTY_ONE_DAYS
        assert record["data"] == to_tagged(expected_session(data, pickle_only=True))
        # The exact JSON, spelled out for a few values, as a user reads it.
        assert record["data"]["pair"] == {"$tuple": [1, "two", {"$tuple": [3.5, None]}]}
        assert record["data"]["when"] == {"$datetime": "2023-05-17T14:30:15.250000"}
        assert record["data"]["html"] == {"$markup": "<b>Hi</b> &amp; bye"}
        assert record["data"]["tags"] == {"$set": ["green", "red"]}
        assert record["data"]["uid"] == {"$uuid": "4b2f6b7e-8d61-4f4e-9a3b-0c9d8e7f6a5b"}
        assert record["data"]["price"] == {"$decimal": "19.990"}
        assert record["data"]["ordered"] == {"$ordereddict": [["z", 1], ["a", 2]]}
        assert record["data"]["ids"] == {"$map": [[1, "one"], [2, "two"]]}


@pytest.mark.parametrize("version", VERSIONS)
def test_sesstool_shows_what_the_old_app_itself_sees(version: str, redis_url: str, cli: CliRunner) -> None:
    # The old app's own view, tagged by its script independently of sesstool.
    (session,) = write_old_sessions(version, redis_url, JSON_DATA[:1], pickle_only=True)
    seen = read_old_session(version, redis_url, session["cookie"])
    assert seen["new"] is False
    result = cli("show", session["sid"], "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["data"] == seen["data"]


@pytest.mark.parametrize("version", VERSIONS)
def test_show_by_id_key_and_signed_cookie(version: str, redis_url: str, cli: CliRunner) -> None:
    (session,) = write_old_sessions(version, redis_url, [{"user_id": 5}], use_signer=True, app_object=True)
    sid, cookie = session["sid"], session["cookie"]
    expected = {
        "sid": sid,
        "key": f"session:{sid}",
        "serializer": "pickle",
        "data": {
            "_permanent": True,
            "user_id": 5,
            "cart": {"$object": {"class": "__main__.Cart", "args": [], "state": CART_STATE, "new": True}},
        },
    }
    for name in (sid, f"session:{sid}"):
        result = cli("show", name, "--store", redis_url, "--format", "json")
        assert result.exit_code == 0, result.stderr
        record = result.json()
        assert {k: record[k] for k in expected} == expected
        assert 0 < record["ttl"] <= THIRTY_ONE_DAYS
    # The cookie the browser holds, sid.signature, verified with the app's key.
    result = cli("show", cookie, "--store", redis_url, "--secret-key", SECRET, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["data"] == expected["data"]
    wrong = cli("show", cookie, "--store", redis_url, "--secret-key", "not-the-key", "--format", "json")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("error:") and "not-the-key" not in wrong.stderr


# -- memcached ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_memcached_sessions_are_protocol_0_pickles(version: str, memcached_server: ServerProcess) -> None:
    from pymemcache.client.base import Client

    store = f"memcached://{memcached_server.host}:{memcached_server.port}"
    (session,) = write_old_sessions(version, store, JSON_DATA[:1], pickle_only=True)
    client = Client((memcached_server.host, memcached_server.port))
    try:
        raw = client.get(f"session:{session['sid']}")
    finally:
        client.close()
    assert raw is not None and raw[:3] == b"(dp"  # Flask-Session's memcached backend: protocol 0
    name, decoded = serializers.decode(raw)
    assert name == "pickle"
    assert decoded is not None and same(decoded, expected_session(JSON_DATA[0], pickle_only=True))
