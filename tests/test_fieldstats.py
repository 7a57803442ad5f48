"""``stats --by`` and ``stats --fields``: exact counts on known data written by real Flask-Session apps."""

from __future__ import annotations

import collections
import io
import random
import typing as t

import msgspec
import pytest

from sesstool.cli.main import main
from sesstool.ops.fieldstats import BoundedTally
from sesstool.render.env import Environment
from tests.flaskapps import make_app, write_session


@pytest.fixture
def shop(redis_url: str) -> t.Any:
    """Users 42 (3 sessions), 7 (2) and "alice" (1), two anonymous sessions, a nested field."""
    app = make_app(redis_url=redis_url)
    for data in (
        {"_user_id": 42, "cart": {"currency": "EUR"}},
        {"_user_id": 42, "cart": {"currency": "EUR"}},
        {"_user_id": 42, "cart": {"currency": "USD"}},
        {"_user_id": 7},
        {"_user_id": 7, "theme": "dark"},
        {"_user_id": "alice"},
        {"theme": "light"},
        {"csrf_token": "x" * 50},
    ):
        write_session(app, data)
    return app


def sizes_by_user(redis_client: t.Any) -> dict[t.Any, list[int]]:
    out: dict[t.Any, list[int]] = {}
    for key in redis_client.scan_iter(b"session:*"):
        value = redis_client.get(key)
        out.setdefault(msgspec.msgpack.decode(value).get("_user_id"), []).append(len(value))
    return out


def test_by_field_counts_sessions_and_bytes_per_value(cli: t.Any, redis_url: str, shop: t.Any,
                                                      redis_client: t.Any) -> None:
    result = cli("stats", "--store", redis_url, "--by", "_user_id", "--format", "json")
    assert result.exit_code == 0, result.stderr
    sizes = sizes_by_user(redis_client)
    assert result.json() == {
        "field": "_user_id",
        "values": [
            {"value": "42", "sessions": 3, "bytes": sum(sizes[42])},
            {"value": "7", "sessions": 2, "bytes": sum(sizes[7])},
            {"value": "alice", "sessions": 1, "bytes": sum(sizes["alice"])},
        ],
        "missing": 2, "count": 8, "distinct": 3, "undecodable": 0, "approximate": False, "error": 0,
    }


def test_by_a_dotted_path_with_top_and_where(cli: t.Any, redis_url: str, shop: t.Any) -> None:
    result = cli("stats", "--store", redis_url, "--by", "cart.currency", "--top", "1", "--format", "json").json()
    assert [(v["value"], v["sessions"]) for v in result["values"]] == [("EUR", 2)]
    assert result["missing"] == 5 and result["distinct"] == 2
    where = cli("stats", "--store", redis_url, "--by", "_user_id", "--where", "theme", "--format", "json").json()
    assert [(v["value"], v["sessions"]) for v in where["values"]] == [("7", 1)]
    assert where["missing"] == 1 and where["count"] == 2


def test_fields_measure_each_field_in_the_sessions_own_encoding(cli: t.Any, redis_url: str, shop: t.Any,
                                                                 redis_client: t.Any) -> None:
    result = cli("stats", "--store", redis_url, "--fields", "--format", "json").json()
    expected: dict[str, list[int]] = {}
    for key in redis_client.scan_iter(b"session:*"):
        for name, value in msgspec.msgpack.decode(redis_client.get(key)).items():
            size = len(msgspec.msgpack.encode(name)) + len(msgspec.msgpack.encode(value))
            expected.setdefault(name, []).append(size)
    rows = {row["field"]: row for row in result["fields"]}
    assert set(rows) == set(expected) == {"_user_id", "cart", "theme", "csrf_token", "_permanent"}
    for name, sizes in expected.items():
        assert rows[name] == {"field": name, "sessions": len(sizes), "bytes": sum(sizes), "max": max(sizes)}
    bytes_order = [row["bytes"] for row in result["fields"]]
    assert bytes_order == sorted(bytes_order, reverse=True)
    assert result["count"] == 8 and result["approximate"] is False


def test_undecodable_sessions_are_counted_not_fatal(cli: t.Any, redis_url: str, shop: t.Any,
                                                    redis_client: t.Any) -> None:
    redis_client.set(b"session:garbage", b"\xc1\x00\xffnot a session")
    for args in (["--by", "_user_id"], ["--fields"]):
        result = cli("stats", "--store", redis_url, *args, "--format", "json")
        assert result.exit_code == 0
        assert result.json()["undecodable"] == 1 and result.json()["count"] == 8
        assert "1 session(s) could not be decoded" in result.stderr


def test_plain_table_and_csv(cli: t.Any, redis_url: str, shop: t.Any) -> None:
    table = cli("stats", "--store", redis_url, "--by", "_user_id")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["VALUE", "SESSIONS", "BYTES"]
    assert lines[1].split()[:2] == ["42", "3"]
    assert "8 sessions, 2 without _user_id, 3 distinct values" in table.stdout
    assert "█" not in table.stdout and "\x1b" not in table.stdout
    csv = cli("stats", "--store", redis_url, "--fields", "--format", "csv").stdout.splitlines()
    assert csv[0] == "field,sessions,bytes,max" and len(csv) == 6


def test_hostile_values_are_escaped_and_bounded(cli: t.Any, redis_url: str, redis_client: t.Any) -> None:
    hostile = "\x1b]52;c;aGk=\x07[bold]x" + "y" * 5000
    for n in range(3):
        redis_client.set(f"session:h{n}".encode(), msgspec.msgpack.encode({"_user_id": hostile, hostile: 1}))
    for rich in (False, True):
        env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(),
                          stdout_isatty=rich, stderr_isatty=False, no_color=not rich)
        for args in (["--by", "_user_id"], ["--fields"]):
            assert main(["stats", "--store", redis_url, *args], env) == 0
        out = t.cast(io.StringIO, env.stdout).getvalue()
        assert "\x1b]" not in out and "\x07" not in out
        assert "5,019 characters" in out  # the long value is shown shortened
    as_json = cli("stats", "--store", redis_url, "--by", "_user_id", "--format", "json").json()
    assert as_json["values"][0]["sessions"] == 3 and len(as_json["values"][0]["value"]) < 300


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--by", "a", "--fields"], "not both"), (["--top", "3"], "--top needs"), (["--by", "a..b"], "empty part")],
)
def test_usage_errors(cli: t.Any, redis_url: str, args: list[str], message: str) -> None:
    result = cli("stats", "--store", redis_url, *args)
    assert result.exit_code == 2 and message in result.stderr


# --- the bounded tally past its capacity ------------------------------------------------


def test_tally_is_exact_within_capacity() -> None:
    tally = BoundedTally(capacity=10)
    for name in "aabbbc":
        tally.add(name, 10)
    assert not tally.approximate
    assert [(name, e.sessions, e.bytes) for name, e in tally.top(5)] == [("b", 3, 30), ("a", 2, 20), ("c", 1, 10)]


def test_tally_past_capacity_keeps_heavy_hitters_within_the_stated_error() -> None:
    rng = random.Random(7)
    stream = ["heavy-1"] * 3000 + ["heavy-2"] * 2000 + [f"user-{rng.randrange(50_000)}" for _ in range(20_000)]
    rng.shuffle(stream)
    tally = BoundedTally(capacity=100)
    for name in stream:
        tally.add(name, 1)
    true = collections.Counter(stream)
    assert tally.approximate and 0 < tally.error <= 2 * len(stream) // 100
    assert len(tally.entries) <= 100
    top = tally.top(2)
    assert [name for name, _ in top] == ["heavy-1", "heavy-2"]
    for name, entry in tally.entries.items():
        assert true[name] - tally.error <= entry.sessions <= true[name]


def test_cli_says_when_counts_are_approximate(cli: t.Any, redis_url: str, redis_client: t.Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sesstool.ops import fieldstats

    monkeypatch.setattr(fieldstats, "DEFAULT_CAPACITY", 4)
    pipe = redis_client.pipeline()
    for n in range(60):
        pipe.set(f"session:s{n}".encode(), msgspec.msgpack.encode({"_user_id": 1 if n < 30 else n}))
    pipe.execute()
    result = cli("stats", "--store", redis_url, "--by", "_user_id", "--format", "json").json()
    assert result["approximate"] is True and result["error"] > 0 and result["distinct"] is None
    top = result["values"][0]
    assert top["value"] == "1" and 30 - result["error"] <= top["sessions"] <= 30
    table = cli("stats", "--store", redis_url, "--by", "_user_id").stdout
    assert f"may be up to {result['error']:,} under" in table


def test_by_field_on_memcached(cli: t.Any, memcached_server: t.Any) -> None:
    from pymemcache.client.base import Client

    client = Client((memcached_server.host, memcached_server.port))
    client.flush_all()
    client.close()
    app = make_app(memcached_servers=[(memcached_server.host, memcached_server.port)])
    for user in (1, 1, 2):
        write_session(app, {"_user_id": user})
    url = f"memcached://{memcached_server.host}:{memcached_server.port}"
    result = cli("stats", "--store", url, "--by", "_user_id", "--format", "json").json()
    assert [(v["value"], v["sessions"]) for v in result["values"]] == [("1", 2), ("2", 1)]


def test_fields_of_json_and_pickled_sessions(cli: t.Any, redis_url: str, redis_client: t.Any) -> None:
    import pickle

    write_session(make_app(redis_url=redis_url, fmt="json"), {"cart": ["a", "b"]})
    redis_client.set(b"session:from-flask-session-0-6-pickled", pickle.dumps({"cart": ["c"]}, protocol=4))
    result = cli("stats", "--store", redis_url, "--fields", "--format", "json").json()
    cart = next(row for row in result["fields"] if row["field"] == "cart")
    json_size = len(msgspec.json.encode("cart")) + len(msgspec.json.encode(["a", "b"]))
    pickled_size = len(msgspec.json.encode("cart")) + len(msgspec.json.encode(["c"]))  # measured as tagged JSON
    assert cart == {"field": "cart", "sessions": 2, "bytes": json_size + pickled_size, "max": json_size}


def test_lone_surrogates_in_values_and_field_names(cli: t.Any, redis_url: str, redis_client: t.Any) -> None:
    """Text no encoding can carry makes the session undecodable: counted, never a crash."""
    import pickle

    redis_client.set(b"session:odd-pickle", pickle.dumps({"_user_id": "u\udc80", "k\udcff": 1}, protocol=4))
    redis_client.set(b"session:odd-json", b'{"_user_id": "u\\udc80"}')
    by = cli("stats", "--store", redis_url, "--by", "_user_id", "--format", "json")
    assert by.exit_code == 0, by.stderr
    assert by.json()["values"] == [] and by.json()["undecodable"] == 2
    assert "2 session(s) could not be decoded" in by.stderr
    fields = cli("stats", "--store", redis_url, "--fields")
    assert fields.exit_code == 0 and "Traceback" not in fields.stderr
