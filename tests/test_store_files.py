"""The file store (``file://``): Flask-Session's filesystem / cachelib directories.

Real parts: sessions are written and read back by the real Flask-Session 0.8
(``SESSION_TYPE`` filesystem and cachelib) and 0.5 (its own venv, md5 file names);
hostile directories hold what an attacker with write access could plant. What every
store does is in tests/test_store_contract.py; this is what only files do.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import time
import typing as t
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.stores import files_dir, open_store
from sesstool.stores.files import FileStore
from sesstool.stores.files_format import COUNT_FILES, MAX_FILE, BadFile, build, digest, parse, unwrap, wrap
from tests.flaskapps import make_app, read_session, write_session
from tests.pickleops import doubling, session
from tests.properties import examples
from tests.write_helpers import app_has_no_session

# -- the format: a parser of stored bytes, property-tested ---------------------------


@examples(300)
@given(expiry=st.integers(0, 2**32 - 1), value=st.binary(max_size=300))
def test_build_then_parse_gives_back_every_value(expiry: int, value: bytes) -> None:
    content = build(expiry, value)
    assert parse(content) == (expiry, value)
    # cachelib reads what sesstool writes: a session pickle as it is, anything else as bytes
    loaded = pickle.loads(content[4:])
    assert loaded == value or content[4:] == value


@examples(300)
@given(value=st.one_of(st.binary(max_size=400), st.builds(lambda b: pickle.dumps(b, 5), st.binary(max_size=400))))
def test_wrapping_round_trips_even_a_value_that_looks_wrapped(value: bytes) -> None:
    assert parse(build(0, value))[1] == value
    assert unwrap(pickle.dumps(value, 5)) == value and unwrap(pickle.dumps(value, 3)) == value


@examples(500)
@given(content=st.binary(max_size=64))
def test_parse_never_fails_but_with_bad_file(content: bytes) -> None:
    try:
        expiry, value = parse(content)
    except BadFile:
        assert len(content) < 5
        return
    assert expiry == struct.unpack("=I", content[:4])[0] and isinstance(value, bytes)


@examples(60)
@given(files=st.lists(st.tuples(st.sampled_from(["sha256", "md5", "odd"]), st.binary(max_size=40)), max_size=8))
def test_a_scan_of_any_directory_yields_or_skips_every_file(files: list[tuple[str, bytes]]) -> None:
    import tempfile

    assert len(files) <= files_dir.NAMED_SKIPS  # so every skipped file is named, one warning each
    with tempfile.TemporaryDirectory() as directory:
        for index, (kind, content) in enumerate(files):
            name = f"odd{index}" if kind == "odd" else digest(kind, b"%d" % index)
            Path(directory, name).write_bytes(content)
        skipped: list[str] = []
        store = FileStore(directory, warn=skipped.append)
        items = [item for batch in store.scan(b"", batch=3) for item in batch]
        store.close()
        assert len(items) + len(skipped) == len(files)
        for item in items:
            content = Path(directory, item.key.decode()).read_bytes()
            assert parse(content)[1] == item.value


def test_a_session_pickle_is_stored_as_it_is() -> None:
    dumped = pickle.dumps({"user": 42}, 5)
    assert wrap(dumped) == dumped and unwrap(dumped) is None
    big = pickle.dumps(b"x" * 70000, 5)  # unframed BINBYTES
    assert unwrap(big) == b"x" * 70000


# -- helpers ----------------------------------------------------------------------------


def _count(directory: Path) -> int | None:
    """cachelib's item count, read as cachelib reads it (a test reading its own file)."""
    for name in COUNT_FILES:
        path = directory / name
        if path.exists():
            return t.cast(int, pickle.loads(path.read_bytes()[4:]))
    return None


def _session_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in COUNT_FILES)


@pytest.fixture(params=["cachelib", "filesystem"])
def app_dir(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[t.Any, Path]:
    directory = tmp_path / "flask_session"
    return make_app(file_dir=str(directory), file_type=request.param), directory


# -- Flask-Session 0.8, in process ----------------------------------------------------


def test_list_show_edit_expire_persist_delete_with_the_real_app(cli: t.Any, app_dir: tuple[t.Any, Path]) -> None:
    app, directory = app_dir
    written = [write_session(app, {"user_id": i}) for i in range(3)]
    url = f"file://{directory}"
    assert _count(directory) == 3
    listed = cli("list", "--store", url, "--format", "json").json()
    assert sorted(r["key"] for r in listed) == _session_files(directory)
    assert all(r["sid"] is None and r["serializer"] == "pickle" and r["ttl"] > 2678000 for r in listed)
    table = cli("list", "--store", url)
    assert table.stdout.startswith("KEY ") and _session_files(directory)[0] in table.stdout

    first, second, third = written
    shown = cli("show", first.sid, "--store", url, "--format", "json").json()
    assert shown["sid"] == first.sid and shown["data"] == {"_permanent": True, "user_id": 0}
    assert cli("edit", first.sid, "--set", "user_id=7", "--set", "role=admin", "--store", url).exit_code == 0
    assert read_session(app, first.cookie) == {"_permanent": True, "user_id": 7, "role": "admin"}

    assert cli("expire", second.sid, "--in", "1h", "--store", url).exit_code == 0
    ttl = cli("show", second.sid, "--store", url, "--format", "json").json()["ttl"]
    assert 3590 <= ttl <= 3600 and read_session(app, second.cookie)["user_id"] == 1
    assert cli("persist", second.sid, "--store", url).exit_code == 0
    assert cli("show", second.sid, "--store", url, "--format", "json").json()["ttl"] is None
    assert read_session(app, second.cookie)["user_id"] == 1  # expiry 0: never expires, to cachelib too

    deleted = cli("delete", third.sid, "--store", url)
    assert deleted.exit_code == 0, deleted.stderr
    assert _count(directory) == 2 and len(_session_files(directory)) == 2
    missing = cli("delete", third.sid, "--store", url)
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")
    assert app_has_no_session(app, third.cookie)  # (which saves a fresh session under that id)


def test_purge_expired_deletes_what_passed_its_expiry(cli: t.Any, app_dir: tuple[t.Any, Path]) -> None:
    app, directory = app_dir
    old, fresh = write_session(app, {"a": 1}), write_session(app, {"b": 2})
    url = f"file://{directory}"
    # (expire --at a past time deletes at once, as on every store: the app's own
    # saves are what leave files past their expiry)
    store = open_store(url)
    assert store.expire_at(b"session:" + old.sid.encode(), int(time.time()) - 60)
    store.close()
    listed = {r["ttl"] for r in cli("list", "--store", url, "--format", "json").json()}
    assert 0 in listed  # past its expiry, still held
    dry = cli("purge", "--expired", "--dry-run", "--store", url, "--format", "json").json()
    assert dry["matched"] == 1 and dry["deleted"] == 0
    done = cli("purge", "--expired", "--yes", "--store", url, "--format", "json").json()
    assert done["matched"] == 1 and done["deleted"] == 1 and _count(directory) == 1
    assert app_has_no_session(app, old.cookie) and read_session(app, fresh.cookie) == {"_permanent": True, "b": 2}
    idle = cli("purge", "--idle", "1h", "--yes", "--store", url)
    assert idle.exit_code == 2 and "cannot report idle time" in idle.stderr


def test_export_then_import_into_another_directory_round_trips(cli: t.Any, tmp_path: Path) -> None:
    source = tmp_path / "a"
    app = make_app(file_dir=str(source))
    written = [write_session(app, {"user": i, "tags": ["x"]}) for i in range(3)]
    exported = cli("export", "--store", f"file://{source}")
    assert exported.exit_code == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert all(r["sid"] is None for r in records)
    target = tmp_path / "b"
    make_app(file_dir=str(target))  # an empty cache: its count file says 0
    imported = cli("import", "-", "--store", f"file://{target}", input=exported.stdout)
    assert imported.exit_code == 0, imported.stderr
    assert _session_files(target) == _session_files(source) and _count(target) == 3
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    moved = make_app(file_dir=str(target))
    for i, one in enumerate(written):
        assert read_session(moved, one.cookie) == {"_permanent": True, "user": i, "tags": ["x"]}
    skipped = cli("import", "-", "--store", f"file://{target}", "--skip-existing", "--format", "json",
                  input=exported.stdout)
    assert skipped.json() == {"imported": 0, "skipped": 3} and _count(target) == 3


def test_records_without_a_sid_do_not_go_into_a_store_whose_keys_carry_it(cli: t.Any, tmp_path: Path,
                                                                          redis_url: str) -> None:
    app = make_app(file_dir=str(tmp_path))
    write_session(app, {"a": 1})
    exported = cli("export", "--store", f"file://{tmp_path}").stdout
    refused = cli("import", "-", "--store", redis_url, input=exported)
    assert refused.exit_code == 2 and "is not under the prefix" in refused.stderr and "sid null" in refused.stderr
    csv = cli("list", "--store", f"file://{tmp_path}", "--format", "csv").stdout.splitlines()
    assert csv[0] == "sid,key,ttl,size,serializer" and csv[1].startswith(",") and _session_files(tmp_path)[0] in csv[1]


def test_a_rewrite_keeps_the_mode(cli: t.Any, tmp_path: Path) -> None:
    app = make_app(file_dir=str(tmp_path))
    one = write_session(app, {"a": 1})
    (path,) = (tmp_path / name for name in _session_files(tmp_path))
    path.chmod(0o640)
    assert cli("edit", one.sid, "--set", "a=2", "--store", f"file://{tmp_path}").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert cli("expire", one.sid, "--in", "1d", "--store", f"file://{tmp_path}").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and read_session(app, one.cookie)["a"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".__wz_cache")]  # no temporary file left


def test_conditional_operations_keep_what_the_app_changed(tmp_path: Path) -> None:
    app = make_app(file_dir=str(tmp_path))
    one = write_session(app, {"a": 1})
    store = t.cast(FileStore, open_store(f"file://{tmp_path}"))
    (item,) = next(store.scan(b"session:"))
    client = app.test_client()
    client.set_cookie("session", one.cookie)
    client.post("/set", json={"a": 2})  # the app saves after sesstool read
    assert not store.compare_and_set(item, pickle.dumps({"a": 3}))
    assert store.delete_if_unchanged([item]) == 0
    assert read_session(app, one.cookie) == {"_permanent": True, "a": 2}
    (fresh,) = next(store.scan(b"session:"))
    assert store.delete_if_unchanged([fresh]) == 1 and _count(tmp_path) == 0
    assert app_has_no_session(app, one.cookie)


def test_scan_honours_the_batch_size(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    store.set_many([(b"session:%d" % i, b"v%d" % i, None) for i in range(7)])
    batches = [len(batch) for batch in store.scan(b"session:", batch=3)]
    assert batches == [3, 3, 1]


def test_a_missing_directory_is_one_error_line(cli: t.Any, tmp_path: Path) -> None:
    result = cli("list", "--store", f"file://{tmp_path}/nope")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "no such directory" in result.stderr
    bad = cli("list", "--store", f"file://{tmp_path}?hash=crc32")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")


# -- hostile directories ----------------------------------------------------------------


def _plant(directory: Path) -> dict[str, str]:
    """Every kind of bad file, each under a name a session could have."""
    names = {what: digest("sha256", what.encode()) for what in
             ("short", "garbage", "bomb", "symlink", "fifo", "huge", "dir")}  # fmt: skip
    (directory / names["short"]).write_bytes(b"\x00\x00")
    (directory / names["garbage"]).write_bytes(struct.pack("=I", 0) + b"\x80\x05not a pickle at all.")
    (directory / names["bomb"]).write_bytes(struct.pack("=I", 0) + session(doubling(40, b"\x8c\x01x")))
    (directory / names["symlink"]).symlink_to("/etc/passwd")
    os.mkfifo(directory / names["fifo"])
    with open(directory / names["huge"], "wb") as huge:
        huge.truncate(MAX_FILE + 1)  # sparse: big to stat, nothing on disk
    (directory / names["dir"]).mkdir()
    (directory / "\x1b[31mnot-a-hash").write_bytes(b"x")
    return names


def test_hostile_files_are_reported_skipped_and_the_rest_goes_on(cli: t.Any, tmp_path: Path) -> None:
    app = make_app(file_dir=str(tmp_path))
    good = write_session(app, {"ok": True})
    names = _plant(tmp_path)
    url = f"file://{tmp_path}"
    listed = cli("list", "--store", url, "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    by_key = {r["key"]: r for r in listed.json()}
    assert set(by_key) == {names["garbage"], names["bomb"], *_good_names(tmp_path, names)}
    assert by_key[names["garbage"]]["serializer"] == "unknown" and by_key[names["bomb"]]["serializer"] == "unknown"
    assert "\x1b" not in listed.stderr and "not a cachelib file name" in listed.stderr
    for why in ("a symlink", "not a regular file", "past the", "shorter than a header"):
        assert why in listed.stderr
    shown = cli("show", good.sid, "--store", url, "--format", "json")
    assert shown.json()["data"] == {"_permanent": True, "ok": True}
    exported = cli("export", "--store", url)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert exported.exit_code == 0 and len(lines) == 3
    assert {r["key"] for r in lines if r["serializer"] == "unknown"} == {names["garbage"], names["bomb"]}
    assert all("raw" in r for r in lines if r["serializer"] == "unknown")  # kept byte for byte

    purged = cli("purge", "--all", "--yes", "--store", url, "--format", "json")
    assert purged.exit_code == 0 and purged.json()["deleted"] == 3, purged.stderr
    assert (tmp_path / names["symlink"]).is_symlink() and Path("/etc/passwd").exists()
    assert stat.S_ISFIFO((tmp_path / names["fifo"]).stat().st_mode) and _count(tmp_path) == 0


def test_past_ten_skipped_files_are_counted_not_named(cli: t.Any, tmp_path: Path) -> None:
    for i in range(13):
        (tmp_path / f"stray-{i:02d}").write_bytes(b"x")
    listed = cli("list", "--store", f"file://{tmp_path}", "--format", "json")
    assert listed.exit_code == 0 and listed.json() == []
    warnings = listed.stderr.splitlines()
    assert sum("not a cachelib file name" in line for line in warnings) == 10
    assert any("skipped 3 more files" in line for line in warnings), listed.stderr


def _good_names(directory: Path, planted: dict[str, str]) -> set[str]:
    return {name for name in _session_files(directory) if name not in planted.values() and len(name) == 64}


def test_a_symlink_at_a_sessions_name_is_never_followed(cli: t.Any, tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.write_bytes(b"keep me")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / digest("sha256", b"session:abc")).symlink_to(target)
    url = f"file://{tmp_path}/d"
    for args in (["show", "abc"], ["edit", "abc", "--set", "a=1"], ["expire", "abc", "--in", "1h"]):
        result = cli(*args, "--store", url)
        assert result.exit_code in (1, 2, 4) and result.stderr.startswith("error: "), (args, result.stderr)
    cli("delete", "abc", "--store", url)
    assert target.read_bytes() == b"keep me"


# -- Flask-Session 0.5 (md5 names, its own venv) ---------------------------------------


@pytest.mark.interop
def test_flask_session_05_files_are_read_changed_and_read_back(cli: t.Any, tmp_path: Path) -> None:
    from tests.oldapps import read_old_session, write_old_sessions

    store = f"file://{tmp_path}"
    written = write_old_sessions("0.5", store, [{"user": 1}, {"user": 2}, {"user": 3}], pickle_only=True)
    names = _session_files(tmp_path)
    assert all(len(name) == 32 for name in names)  # cachelib 0.13: md5
    listed = cli("list", "--store", store, "--format", "json").json()
    assert sorted(r["key"] for r in listed) == names and {r["serializer"] for r in listed} == {"pickle"}
    first, second, third = written
    edited = cli("edit", first["sid"], "--set", "user=10", "--store", store)
    assert edited.exit_code == 0, edited.stderr
    seen = read_old_session("0.5", store, first["cookie"])
    assert not seen["new"] and seen["data"]["user"] == 10 and seen["data"]["price"] == {"$decimal": "19.990"}
    opened = open_store(store)
    assert opened.expire_at(b"session:" + second["sid"].encode(), int(time.time()) - 5)
    opened.close()
    assert cli("purge", "--expired", "--yes", "--store", store).exit_code == 0
    assert read_old_session("0.5", store, second["cookie"])["new"]
    assert cli("delete", third["sid"], "--store", store).exit_code == 0
    assert read_old_session("0.5", store, third["cookie"])["new"]
    assert _count(tmp_path) == len(_session_files(tmp_path))
    # A new session written by sesstool lands under the md5 name the old app looks for.
    created = cli("import", "-", "--store", store,
                  input=json.dumps({"sid": "newsid", "ttl": 600, "serializer": "pickle", "data": {"n": 1}}))
    assert created.exit_code == 0, created.stderr
    assert (tmp_path / digest("md5", b"session:newsid")).exists()
    assert read_old_session("0.5", store, "newsid")["data"] == {"n": 1}


def test_doctor_and_migrate_know_the_app_reads_only_pickles_here(cli: t.Any, tmp_path: Path) -> None:
    app = make_app(file_dir=str(tmp_path))
    one = write_session(app, {"a": 1})
    url = f"file://{tmp_path}"
    checks = {c["id"]: c for c in cli("doctor", "--store", url, "--format", "json").json()["checks"]}
    assert checks["sessions.pickle"]["level"] == "ok" and checks["serializers"]["level"] == "ok"
    refused = cli("migrate", "--to", "msgpack", "--store", url)
    assert refused.exit_code == 2 and "would make every session unreadable" in refused.stderr
    assert read_session(app, one.cookie) == {"_permanent": True, "a": 1}


def test_a_redis_export_imported_into_a_directory_is_pickled_for_the_app(cli: t.Any, tmp_path: Path,
                                                                         redis_url: str) -> None:
    import uuid

    prefix = f"files{uuid.uuid4().hex[:8]}:"
    on_redis = make_app(redis_url=redis_url, prefix=prefix)
    one = write_session(on_redis, {"user": 5, "cart": [1, 2]})
    exported = cli("export", "--store", redis_url, "--prefix", prefix)
    assert json.loads(exported.stdout)["serializer"] == "msgpack"
    imported = cli("import", "-", "--store", f"file://{tmp_path}", "--prefix", prefix, input=exported.stdout)
    assert imported.exit_code == 0, imported.stderr
    on_files = make_app(file_dir=str(tmp_path), prefix=prefix)
    assert read_session(on_files, one.cookie) == {"_permanent": True, "user": 5, "cart": [1, 2]}
    listed = cli("list", "--store", f"file://{tmp_path}", "--format", "json").json()
    assert [r["serializer"] for r in listed] == ["pickle"]


def test_doctor_traces_a_cookie_to_its_file(cli: t.Any, tmp_path: Path) -> None:
    app = make_app(file_dir=str(tmp_path))
    one = write_session(app, {"a": 1})
    url = f"file://{tmp_path}"
    traced = cli("doctor", "--cookie", one.cookie, "--store", url, "--format", "json").json()
    found = {c["id"]: c for c in traced["checks"]}
    assert found["cookie.key"]["level"] == "ok" and found["cookie.decode"]["level"] == "ok"
    lost = cli("doctor", "--cookie", "nosuchsession", "--store", url, "--format", "json")
    assert lost.exit_code == 1
    (key_check,) = [c for c in lost.json()["checks"] if c["id"] == "cookie.key"]
    assert key_check["level"] == "fail" and "hide the session ids" in key_check["message"]
