"""``export`` and ``import`` on a real redis-server: export → delete → import gives back the
same sessions, byte for byte, with their TTL and serializer, as the apps read them."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import pickle
import uuid

import msgspec
import pytest

from sesstool.codecs.tagged import to_tagged
from tests.flaskapps import make_app, read_session, write_session
from tests.oldapps import PICKLE_ONLY, VERSIONS, read_old_session, write_old_sessions
from tests.write_helpers import read_types, typed_app


class Widget:
    """An app class: its pickles cannot be re-created by sesstool."""

    def __init__(self, size: int) -> None:
        self.size = size


@pytest.fixture
def zoo(redis_url: str, redis_client):
    """Sessions of every kind: 0.8 msgpack and json, pickle-era values, an app object,
    bytes nothing decodes, and one without expiry."""
    from markupsafe import Markup

    app = typed_app(redis_url)
    json_app = make_app(redis_url=redis_url, fmt="json")
    cookies = {
        "msgpack": write_session(app, {"user_id": 42, "cart": {"items": [1, 2]}, "blob": None}).cookie,
        "json": write_session(json_app, {"user_id": 7, "name": "bob"}).cookie,
    }
    redis_client.set("session:pickled", pickle.dumps({
        "_permanent": True, "when": dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc), "pair": (1, 2),
        "motd": Markup("<b>hi</b>"), "id": uuid.UUID(int=7), "price": decimal.Decimal("9.99"), "tags": {"a", "b"},
        "raw": b"\x00\xff", "scores": {1: "one"}}), ex=5000)
    redis_client.set("session:opaque", pickle.dumps({"user_id": 3, "widget": Widget(9)}, protocol=2), ex=6000)
    redis_client.set("session:garbage", b"\x01\x02not a session", ex=7000)
    redis_client.set("session:forever", msgspec.msgpack.encode({"user_id": 1}))
    return app, cookies


def _snapshot(redis_client) -> dict[bytes, tuple[bytes, int]]:
    return {key: (redis_client.get(key), redis_client.ttl(key)) for key in redis_client.scan_iter("session:*")}


def test_export_delete_import_gives_back_the_same_sessions(cli, redis_url, redis_client, zoo, tmp_path) -> None:
    app, cookies = zoo
    before = _snapshot(redis_client)
    exported = cli("export", "--store", redis_url)
    assert exported.exit_code == 0, exported.stderr
    dump = tmp_path / "sessions.ndjson"
    dump.write_text(exported.stdout)
    assert len(exported.ndjson()) == 6

    assert cli("purge", "--all", "--yes", "--store", redis_url).exit_code == 0
    assert redis_client.dbsize() == 0
    result = cli("import", str(dump), "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"imported": 6, "skipped": 0}

    after = _snapshot(redis_client)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    for key, (_, ttl) in before.items():
        assert after[key][1] == -1 if ttl == -1 else ttl - 3 <= after[key][1] <= ttl
    types = read_types(app, "pickled")
    assert types["motd"] == ["markupsafe.Markup", "Markup('<b>hi</b>')"]
    assert types["pair"] == ["builtins.tuple", "(1, 2)"] and types["tags"][0] == "builtins.set"
    assert read_session(app, cookies["msgpack"])["cart"] == {"items": [1, 2]}


def test_export_records_are_the_contract_shape_with_raw_only_when_needed(cli, redis_url, zoo) -> None:
    records = {r["sid"]: r for r in cli("export", "--store", redis_url).ndjson()}
    pickled = records["pickled"]
    # (its set may pickle in another order once rebuilt, which would add "raw")
    assert list(pickled)[:6] == ["sid", "key", "ttl", "size", "serializer", "data"]
    msgpack_record = next(r for r in records.values() if r["serializer"] == "msgpack" and r["ttl"])
    assert list(msgpack_record) == ["sid", "key", "ttl", "size", "serializer", "data"]
    assert pickled["serializer"] == "pickle" and 4990 <= pickled["ttl"] <= 5000
    data = pickled["data"]
    assert data["when"] == {"$datetime": "2024-05-01T10:00:00+00:00"}
    assert data["pair"] == {"$tuple": [1, 2]} and data["motd"] == {"$markup": "<b>hi</b>"}
    assert data["id"] == {"$uuid": str(uuid.UUID(int=7))} and data["price"] == {"$decimal": "9.99"}
    assert data["tags"] == {"$set": ["a", "b"]} and data["raw"] == {"$bytes": "AP8="}
    assert data["scores"] == {"$map": [[1, "one"]]}
    assert records["forever"]["ttl"] is None and "raw" not in records["forever"]
    assert records["opaque"]["data"]["widget"]["$object"]["class"] == "tests.test_transfer.Widget"
    assert base64.b64decode(records["opaque"]["raw"])[:2] == b"\x80\x02"
    assert records["garbage"]["serializer"] == "unknown" and records["garbage"]["data"] is None
    assert base64.b64decode(records["garbage"]["raw"]) == b"\x01\x02not a session"


def test_a_pickle_sharing_one_object_twice_comes_back_byte_for_byte(cli, redis_url, redis_client, tmp_path) -> None:
    shared = "".join(["sha", "red"])  # one str object, pickled once and then referenced
    original = pickle.dumps({"a": shared, "b": (1, shared)})
    redis_client.set("session:memo", original, ex=100)
    (record,) = cli("export", "--store", redis_url).ndjson()
    assert base64.b64decode(record["raw"]) == original  # the data alone would pickle it twice
    redis_client.delete("session:memo")
    assert cli("import", "-", "--store", redis_url, input=json.dumps(record)).exit_code == 0
    assert redis_client.get("session:memo") == original


def test_export_where_selects(cli, redis_url, zoo) -> None:
    records = cli("export", "--where", "user_id=42", "--store", redis_url).ndjson()
    assert [r["data"]["user_id"] for r in records] == [42]


def test_import_skip_existing_keeps_what_is_there(cli, redis_url, redis_client, zoo, tmp_path) -> None:
    dump = tmp_path / "dump.ndjson"
    dump.write_text(cli("export", "--store", redis_url).stdout)
    redis_client.set("session:forever", msgspec.msgpack.encode({"user_id": 2}), ex=50)
    redis_client.delete("session:garbage")
    result = cli("import", str(dump), "--skip-existing", "--store", redis_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "imported 1 sessions (5 skipped: already present)\n"
    assert msgspec.msgpack.decode(redis_client.get("session:forever")) == {"user_id": 2}
    assert redis_client.get("session:garbage") == b"\x01\x02not a session"
    overwrite = cli("import", str(dump), "--store", redis_url, "--format", "json")
    assert overwrite.json() == {"imported": 6, "skipped": 0}
    assert msgspec.msgpack.decode(redis_client.get("session:forever")) == {"user_id": 1}
    assert redis_client.ttl("session:forever") == -1


def test_import_from_stdin_with_edited_and_hand_written_records(cli, redis_url, redis_client) -> None:
    app = make_app(redis_url=redis_url)
    lines = [
        {"sid": "hand", "ttl": 600, "data": {"user_id": 5}},  # no serializer: msgpack
        {"key": "session:as-json", "ttl": 0, "serializer": "json", "data": {"n": [1, 2]}},
        {"sid": "pick", "ttl": None, "serializer": "pickle", "data": {"when": {"$date": "2024-01-02"}}},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    result = cli("import", "-", "--store", redis_url, input=text)
    assert result.exit_code == 0, result.stderr
    assert read_session(app, "hand") == {"user_id": 5}
    assert redis_client.get("session:as-json") == b'{"n":[1,2]}' and redis_client.ttl("session:as-json") == 1
    assert pickle.loads(redis_client.get("session:pick")) == {"when": dt.date(2024, 1, 2)}
    assert redis_client.ttl("session:pick") == -1


def test_an_edited_record_with_raw_writes_its_data(cli, redis_url, redis_client, zoo, tmp_path) -> None:
    records = cli("export", "--where", "user_id=3", "--store", redis_url).ndjson()
    (opaque,) = records
    opaque["data"]["user_id"] = 4  # edited in the file: raw no longer describes it
    dump = tmp_path / "edited.ndjson"
    dump.write_text(json.dumps(opaque) + "\n")
    result = cli("import", str(dump), "--store", redis_url)
    assert result.exit_code == 4  # the app object inside cannot be re-created
    assert "line 1: cannot write back the value at 'widget'" in result.stderr


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("not json", 2, "line 2: not JSON"),
        ('{"sid": "x", "ttl": -5, "data": {}}', 2, "line 2: ttl must be a whole number of seconds (0 to"),
        ('{"sid": "x", "serializer": "yaml", "data": {}}', 2, "line 2: unknown serializer 'yaml'"),
        ('{"ttl": 5, "data": {}}', 2, 'line 2: a record needs "sid" (or "key")'),
        ('{"key": "other:x", "data": {}}', 2, "line 2: key 'other:x' is not under the prefix 'session:'"),
        ('{"sid": "x", "serializer": "unknown", "data": null}', 2, 'line 2: a record needs "data" (or "raw")'),
        ('{"sid": "x", "raw": "@@@"}', 2, "line 2: raw must be standard base64"),
        ('{"sid": "x", "data": {"t": {"$tuple": [1]}}}', 4,
         "line 2: msgpack cannot hold this session exactly: t (tuple)"),
    ],
)
def test_an_invalid_record_stops_the_import_naming_its_line(cli, redis_url, redis_client, line, code, message) -> None:
    first, third = json.dumps({"sid": "first", "data": {"a": 1}}), json.dumps({"sid": "third", "data": {}})
    text = f"{first}\n{line}\n{third}"
    result = cli("import", "-", "--store", redis_url, input=text)
    assert result.exit_code == code
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    # The whole file is checked before anything is written: nothing is half-imported.
    assert "nothing imported" in result.stderr
    assert redis_client.exists("session:first", "session:third") == 0


BAD_LINES = [
    '{"sid": "a\\r\\nflush_all", "data": {}}',  # a protocol command smuggled in a sid
    '{"sid": "has space", "data": {}}',
    '{"sid": "x", "ttl": 99999999999999999999, "data": {}}',  # past any store's TTL range
    '{"sid": "x", "ttl": true, "data": {}}',
    json.dumps({"sid": "x" * 300, "data": {}}),
    "[" * 100_000,  # nested past the recursion limit
]


@pytest.mark.parametrize("line", BAD_LINES)
def test_hostile_records_are_refused_and_nothing_is_written(cli, redis_url, redis_client, line) -> None:
    good = json.dumps({"sid": "good", "data": {"a": 1}})
    result = cli("import", "-", "--store", redis_url, input=f"{good}\n{line}\n")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: line 2: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert redis_client.keys("*") == []


def test_a_line_that_is_not_utf8_is_named(cli, redis_url, redis_client, tmp_path) -> None:
    dump = tmp_path / "bad.ndjson"
    dump.write_bytes(b'{"sid": "a", "data": {}}\n{"sid": "\xff\xfe", "data": {}}\n')
    result = cli("import", str(dump), "--store", redis_url)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: line 2: not UTF-8 text")
    assert redis_client.keys("*") == []


def test_skip_invalid_imports_the_valid_records_and_counts_the_others(cli, redis_url, redis_client) -> None:
    lines = [json.dumps({"sid": "one", "data": {"a": 1}}), "not json", '{"sid": "two", "ttl": -1, "data": {}}',
             "", json.dumps({"sid": "three", "ttl": 500, "data": {"b": 2}})]
    result = cli("import", "-", "--skip-invalid", "--store", redis_url, "--format", "json", input="\n".join(lines))
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"imported": 2, "skipped": 0, "invalid": 2}
    assert sorted(redis_client.keys("*")) == [b"session:one", b"session:three"]
    assert 0 < redis_client.ttl("session:three") <= 500
    human = cli("import", "-", "--skip-invalid", "--store", redis_url, input="\n".join(lines))
    assert human.stdout == "imported 2 sessions (2 invalid lines skipped)\n"


def test_the_error_counts_every_invalid_line(cli, redis_url, redis_client) -> None:
    result = cli("import", "-", "--store", redis_url, input="x\n{}\n" + json.dumps({"sid": "ok", "data": {}}))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: line 1: not JSON") and "2 invalid lines in all" in result.stderr


def test_a_file_larger_than_what_is_kept_in_memory_is_read_twice(cli, redis_url, redis_client, monkeypatch,
                                                                 tmp_path) -> None:
    from sesstool.ops import importing

    monkeypatch.setattr(importing, "KEEP_PARSED_BYTES", 100)
    dump = tmp_path / "big.ndjson"
    dump.write_text("".join(json.dumps({"sid": f"s{i}", "data": {"n": i}}) + "\n" for i in range(50)) + "bad\n")
    assert cli("import", str(dump), "--store", redis_url).exit_code == 2
    assert redis_client.keys("*") == []
    result = cli("import", str(dump), "--skip-invalid", "--store", redis_url, "--format", "json")
    assert result.json() == {"imported": 50, "skipped": 0, "invalid": 1}
    assert redis_client.dbsize() == 50


def test_export_takes_format_json_as_one_array(cli, redis_url, redis_client, zoo) -> None:
    lines = cli("export", "--store", redis_url, "--format", "ndjson").ndjson()
    array = cli("export", "--store", redis_url, "--format", "json").json()
    assert array == lines and len(array) == 6
    refused = cli("export", "--store", redis_url, "--format", "table")
    assert refused.exit_code == 2 and refused.stderr.startswith("error: ") and "table" in refused.stderr


def test_import_of_a_missing_file_is_a_usage_error(cli, redis_url, tmp_path) -> None:
    result = cli("import", str(tmp_path / "nope.ndjson"), "--store", redis_url)
    assert result.exit_code == 2 and "cannot read" in result.stderr


@pytest.mark.interop
@pytest.mark.parametrize("version", VERSIONS)
def test_old_flask_session_reads_its_sessions_after_a_round_trip(cli, redis_url, redis_client, version,
                                                                 tmp_path) -> None:
    written = write_old_sessions(version, redis_url, [{"user_id": 1}, {"user_id": 2}], pickle_only=True)
    (with_object,) = write_old_sessions(version, redis_url, [{"user_id": 3}], app_object=True)
    before = _snapshot(redis_client)
    dump = tmp_path / "old.ndjson"
    dump.write_text(cli("export", "--store", redis_url).stdout)
    assert cli("purge", "--all", "--yes", "--store", redis_url).exit_code == 0
    assert cli("import", str(dump), "--store", redis_url).exit_code == 0
    assert {k: v[0] for k, v in _snapshot(redis_client).items()} == {k: v[0] for k, v in before.items()}
    seen = read_old_session(version, redis_url, written[1]["cookie"])
    assert seen["data"] == {**to_tagged(PICKLE_ONLY), "_permanent": True, "user_id": 2}
    cart = read_old_session(version, redis_url, with_object["cookie"])["data"]["cart"]
    assert cart["$object"]["class"] == "__main__.Cart"


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_pickles_sesstool_writes_are_the_bytes_python_writes(protocol) -> None:
    from markupsafe import Markup

    from sesstool.codecs.picklewriter import dumps, protocol_of
    from sesstool.codecs.safepickle import safe_loads

    session = {"_permanent": True, "motd": Markup("<b>x</b>"), "pair": (1, Markup("y")), "id": uuid.UUID(int=1),
               "when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), "n": [1.5, None, b"\x00"]}
    original = pickle.dumps(session, protocol)
    assert protocol_of(original) == protocol
    rewritten = dumps(safe_loads(original), protocol_of(original))
    assert rewritten == original
    assert type(pickle.loads(rewritten)["motd"]) is Markup
