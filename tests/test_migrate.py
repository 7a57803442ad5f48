"""``migrate --to msgpack|json`` on a real redis-server: the pre-upgrade check, in-place
re-encoding with TTL kept, values the target cannot hold, and the documented lossy mode.
The real Flask-Session 0.8 app reads every migrated session."""

from __future__ import annotations

import datetime as dt
import pickle

import msgspec
import pytest

from tests.flaskapps import make_app, read_session, write_session
from tests.oldapps import write_old_sessions
from tests.write_helpers import read_types, typed_app


class Basket:
    """An app class inside a pickled session: never convertible."""


@pytest.fixture
def era(redis_url: str, redis_client):
    """Pickle-era sessions (plain, datetime/Markup/tuple, an app object) next to 0.8 ones."""
    from markupsafe import Markup

    app = make_app(redis_url=redis_url)
    modern = write_session(app, {"user_id": 1})
    plain = {"_permanent": True, "user_id": 7, "cart": {"items": [1, 2], "note": None}, "ratio": 0.5}
    for i in range(3):
        redis_client.set(f"session:plain{i}", pickle.dumps({**plain, "n": i}), ex=4000 + i)
    redis_client.set("session:rich", pickle.dumps({"user_id": 8, "seen": dt.datetime(2024, 5, 1, 10, 0),
                                                  "motd": Markup("<i>x</i>"), "pair": (1, 2)}), ex=5000)
    redis_client.set("session:rich2", pickle.dumps({"visits": [dt.datetime(2024, 1, 1)], "pair": (3, 4)}), ex=5000)
    redis_client.set("session:object", pickle.dumps({"basket": Basket()}), ex=5000)
    redis_client.set("session:garbage", b"\x01\x02", ex=5000)
    return app, modern


def _values(redis_client) -> dict[bytes, bytes]:
    return {key: redis_client.get(key) for key in redis_client.scan_iter("session:*")}


def test_dry_run_counts_serializers_and_names_what_msgpack_cannot_hold(cli, redis_url, redis_client, era) -> None:
    before = _values(redis_client)
    result = cli("migrate", "--to", "msgpack", "--dry-run", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report == {
        "to": "msgpack", "dry_run": True, "lossy": False, "scanned": 8,
        "serializers": {"pickle": 6, "msgpack": 1, "unknown": 1},
        "already": 1, "convertible": 3, "migrated": 0, "converted_lossily": 0, "blocked": 3,
        "undecodable": 1, "changed_meanwhile": 0,
        "problems": [
            {"path": "pair", "type": "tuple", "sessions": 2, "examples": report["problems"][0]["examples"]},
            {"path": "basket", "type": "pickled tests.test_migrate.Basket object", "sessions": 1,
             "examples": ["session:object"]},
            {"path": "motd", "type": "Markup", "sessions": 1, "examples": ["session:rich"]},
            {"path": "seen", "type": "datetime", "sessions": 1, "examples": ["session:rich"]},
            {"path": "visits.0", "type": "datetime", "sessions": 1, "examples": ["session:rich2"]},
        ],
    }
    assert sorted(report["problems"][0]["examples"]) == ["session:rich", "session:rich2"]
    assert _values(redis_client) == before


def test_dry_run_table_for_people(cli, redis_url, era) -> None:
    result = cli("migrate", "--to", "msgpack", "--dry-run", "--store", redis_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "sessions scanned   8\n"
        "by serializer      pickle 6, msgpack 1, unknown 1\n"
        "already msgpack    1\n"
        "would re-encode    3\n"
        "left as they are   3 (values msgpack cannot hold)\n"
        "undecodable        1\n"
        "\nValues msgpack cannot hold:\n"
        "PATH"
    )
    assert "seen      datetime" in result.stdout


def test_migrate_reencodes_in_place_keeping_ttl_and_the_app_reads_it(cli, redis_url, redis_client, era) -> None:
    app, modern = era
    before = _values(redis_client)
    ttls = {key: redis_client.pttl(key) for key in before}
    result = cli("migrate", "--to", "msgpack", "--store", redis_url, "--batch", "2", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert (result.json()["migrated"], result.json()["blocked"]) == (3, 3)
    for i in range(3):
        key = f"session:plain{i}".encode()
        assert msgspec.msgpack.decode(redis_client.get(key)) == {
            "_permanent": True, "user_id": 7, "cart": {"items": [1, 2], "note": None}, "ratio": 0.5, "n": i}
        assert ttls[key] - 3000 <= redis_client.pttl(key) <= ttls[key]
        assert read_session(app, f"plain{i}")["n"] == i
    for key in (b"session:rich", b"session:rich2", b"session:object", b"session:garbage"):
        assert redis_client.get(key) == before[key]
    again = cli("migrate", "--to", "msgpack", "--store", redis_url, "--format", "json").json()
    assert (again["already"], again["migrated"]) == (4, 0)
    assert read_session(app, modern.cookie) == {"_permanent": True, "user_id": 1}


def test_lossy_converts_as_documented(cli, redis_url, redis_client, era) -> None:
    result = cli("migrate", "--to", "msgpack", "--lossy", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert (report["migrated"], report["converted_lossily"], report["blocked"]) == (5, 2, 1)
    assert [p["path"] for p in report["problems"]] == ["basket"]
    types = read_types(typed_app(redis_url), "rich")
    assert types["seen"] == ["builtins.str", "'2024-05-01T10:00:00'"]
    assert types["motd"] == ["builtins.str", "'<i>x</i>'"]
    assert types["pair"] == ["builtins.list", "[1, 2]"]
    rich2 = msgspec.msgpack.decode(redis_client.get("session:rich2"))
    assert rich2 == {"visits": ["2024-01-01T00:00:00"], "pair": [3, 4]}
    assert redis_client.get("session:object")[:1] == b"\x80"  # still the pickle


def test_json_and_msgpack_both_ways(cli, redis_url, redis_client) -> None:
    json_app = make_app(redis_url=redis_url, fmt="json")
    app = make_app(redis_url=redis_url)
    from_json = write_session(json_app, {"user_id": 3, "tags": ["a"]})
    redis_client.set("session:binary", msgspec.msgpack.encode({"blob": b"\x00", "scores": {1: 2}}), ex=100)
    to_msgpack = cli("migrate", "--to", "msgpack", "--store", redis_url, "--format", "json").json()
    assert to_msgpack["migrated"] == 1
    assert read_session(app, from_json.cookie) == {"_permanent": True, "user_id": 3, "tags": ["a"]}
    to_json = cli("migrate", "--to", "json", "--store", redis_url, "--format", "json").json()
    assert to_json["migrated"] == 1 and to_json["blocked"] == 1
    assert {(p["path"], p["type"]) for p in to_json["problems"]} == {("blob", "bytes"), ("scores.1", "int key")}
    assert redis_client.get(f"session:{from_json.sid}").startswith(b"{")


@pytest.mark.parametrize("args", [["--to", "pickle"], ["--to", "yaml"], []])
def test_wrong_or_missing_target_is_a_usage_error(cli, redis_url, args) -> None:
    result = cli("migrate", *args, "--store", redis_url)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--to" in result.stderr


@pytest.mark.interop
def test_flask_session_05_sessions_checked_and_migrated_for_0_8(cli, redis_url, redis_client) -> None:
    plain = write_old_sessions("0.5", redis_url, [{"user_id": 7}, {"user_id": 9}])
    (rich,) = write_old_sessions("0.5", redis_url, [{"user_id": 8}], pickle_only=True)
    check = cli("migrate", "--to", "msgpack", "--dry-run", "--store", redis_url, "--format", "json").json()
    assert (check["serializers"], check["convertible"], check["blocked"]) == ({"pickle": 3}, 2, 1)
    assert {(p["path"], p["type"]) for p in check["problems"]} == {
        ("when", "datetime"), ("day", "date"), ("alarm", "time"), ("ttl", "timedelta"), ("pair", "tuple"),
        ("pair.2", "tuple"), ("tags", "set"), ("frozen", "frozenset"), ("uid", "UUID"), ("price", "Decimal"),
        ("html", "Markup"), ("ordered", "OrderedDict")}
    assert {p["examples"][0] for p in check["problems"]} == {f"session:{rich['sid']}"}

    result = cli("migrate", "--to", "msgpack", "--lossy", "--store", redis_url, "--format", "json")
    assert result.json()["migrated"] == 3
    app = typed_app(redis_url)
    types = read_types(app, rich["cookie"])
    assert types["when"] == ["builtins.str", "'2023-05-17T14:30:15.250000'"]
    assert types["when_utc"][0] == "datetime.datetime"  # msgpack holds an aware UTC datetime as it is
    assert types["ttl"] == ["builtins.float", "172830.0"] and types["html"][0] == "builtins.str"
    assert types["raw"] == ["builtins.bytes", "b'\\x00\\x01\\xfe\\xff'"]
    assert read_session(app, plain[0]["cookie"]) == {"_permanent": True, "user_id": 7}
    assert redis_client.ttl(f"session:{plain[1]['sid']}") > 31 * 86400 - 120
