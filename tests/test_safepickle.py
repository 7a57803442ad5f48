"""The restricted unpickler: allow-listed values come back, nothing else is imported or run.

Pickles here are made by this test process (``pickle.dumps`` of known values, or
opcodes written by hand); no test ever calls plain ``pickle.loads`` on them, except
the control runs that prove a payload is live, which happen in a child process.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import os
import pickle
import subprocess
import sys
import time
import typing as t
import uuid
from pathlib import Path

import markupsafe
import pytest

from sesstool.codecs import serializers
from sesstool.codecs.safepickle import MAX_DEPTH, SafeUnpickler, safe_loads
from sesstool.codecs.tagged import to_tagged
from sesstool.codecs.values import Markup, OpaqueObject

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
UTC_MINUS_5 = dt.timezone(dt.timedelta(hours=-5), "EST")

# One value of every allow-listed type, as a Flask-Session < 0.7 app could store it.
ALLOWED_VALUES: dict[str, t.Any] = {
    "dict": {"a": 1, 2: "b", (1, 2): None},
    "list": [1, "two", 3.0, None, True],
    "tuple": (1, ("nested", 2)),
    "empty_tuple": (),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "bytes": b"\x00\x01\xfe\xff bytes",
    "empty_bytes": b"",
    "bytearray": bytearray(b"\x00\xffarray"),
    "empty_bytearray": bytearray(),
    "str": "Zoë ✓ \U0001f600",
    "int": 42,
    "big_int": -(2**100),
    "float": 1.25,
    "nan": float("nan"),
    "inf": float("-inf"),
    "complex": complex(1.5, -2),
    "bool": True,
    "none": None,
    "datetime": dt.datetime(2026, 11, 21, 10, 0, 0, 123456),
    "datetime_utc": dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.timezone.utc),
    "datetime_offset": dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC_MINUS_5),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 1),
    "time_aware": dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(minutes=330))),
    "timedelta": dt.timedelta(days=-3, seconds=7, microseconds=9),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "uuid4": uuid.uuid4(),
    "decimal": decimal.Decimal("-1234.5600"),
    "decimal_nan": decimal.Decimal("NaN"),
    "markup": markupsafe.Markup("<b>safe</b>"),
    "ordereddict": collections.OrderedDict([("z", 1), ("a", [2, 3])]),
}


def same(a: t.Any, b: t.Any) -> bool:
    """Equal and of the same type (NaN equals NaN; Markup is sesstool's own Markup)."""
    if isinstance(b, markupsafe.Markup):
        return type(a) is Markup and str(a) == str(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(ALLOWED_VALUES))
def test_allowed_types_round_trip(name: str, protocol: int) -> None:
    value = ALLOWED_VALUES[name]
    loaded = safe_loads(pickle.dumps(value, protocol))
    assert same(loaded, value), f"{name} at protocol {protocol}: {loaded!r}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_whole_session_decodes_as_pickle_and_shows_in_tagged_form(protocol: int) -> None:
    session = {"_permanent": True, **ALLOWED_VALUES}
    name, data = serializers.decode(pickle.dumps(session, protocol))
    assert name == "pickle"
    assert data is not None and same(data, session)
    tagged = to_tagged(data)
    assert tagged["markup"] == {"$markup": "<b>safe</b>"}
    assert tagged["datetime_offset"] == {"$datetime": "2026-11-21T10:00:00-05:00"}
    assert tagged["uuid"] == {"$uuid": "12345678-1234-5678-1234-567812345678"}
    assert tagged["complex"] == {"$complex": [1.5, -2.0]}


def test_protocol_0_to_2_python2_names_are_understood() -> None:
    # A Python 2 Flask-Session pickle: __builtin__ and copy_reg, str as latin-1 bytes.
    raw = b"\x80\x02}q\x00(U\x04nameq\x01X\x04\x00\x00\x00Zo\xc3\xabq\x02U\x03agec__builtin__\nlong\nK\x07\x85Rq\x03u."
    assert safe_loads(raw) == {"name": "Zoë", "age": 7}


# -- payloads that would run a command ---------------------------------------------------------


class _Payload:
    """Pickles as a call of ``func(*args)``, the way an attacker's bytes would."""

    def __init__(self, func: t.Any, *args: t.Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[t.Any, tuple[t.Any, ...]]:
        return self.func, self.args


def _getattr_chain(marker: Path, protocol: int) -> bytes:
    # getattr(__import__("os"), "system")("touch MARKER"): REDUCE calls what a REDUCE
    # returned, which no __reduce__ can express, so the opcodes are written by hand.
    command = f"touch {marker}".encode()
    if protocol == 0:
        return (
            b"(dp0\nS'evil'\ncbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
            + b"(S'"
            + command
            + b"'\ntRs."
        )

    def text(value: bytes) -> bytes:
        return b"X" + len(value).to_bytes(4, "little") + value

    return (
        b"\x80" + bytes([protocol]) + b"}" + text(b"evil")
        + b"cbuiltins\ngetattr\n" + b"cbuiltins\n__import__\n" + text(b"os") + b"\x85R"
        + text(b"system") + b"\x86R" + text(command) + b"\x85R" + b"s."
    )  # fmt: skip


PAYLOADS: dict[str, tuple[str, t.Callable[[Path, int], bytes]]] = {
    "os.system": ("posix.system", lambda m, p: pickle.dumps({"evil": _Payload(os.system, f"touch {m}")}, p)),
    "posix.system": (
        "posix.system",
        lambda m, p: b"(dp0\nS'evil'\ncposix\nsystem\n(S'touch " + str(m).encode() + b"'\ntRs.",
    ),
    "subprocess": (
        "subprocess.check_call",
        lambda m, p: pickle.dumps({"evil": _Payload(subprocess.check_call, ["touch", str(m)])}, p),
    ),
    "eval": (
        "builtins.eval",
        lambda m, p: pickle.dumps({"evil": _Payload(eval, f"__import__('os').system('touch {m}')")}, p),
    ),
    "exec": (
        "builtins.exec",
        lambda m, p: pickle.dumps({"evil": _Payload(exec, f"open({str(m)!r}, 'w').close()")}, p),
    ),
    "getattr chain": ("builtins.getattr", _getattr_chain),
}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_a_malicious_pickle_runs_nothing(payload: str, protocol: int, tmp_path: Path) -> None:
    class_path, build = PAYLOADS[payload]
    marker = tmp_path / "pwned"
    raw = build(marker, protocol)

    # Control: plain pickle.loads, in a child process, really creates the marker, so the
    # payload is live and its absence below means something.
    subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
        input=raw,
        check=False,
        capture_output=True,
        timeout=30,
    )
    assert marker.exists(), "the payload did not work under plain pickle.loads"
    marker.unlink()

    name, data = serializers.decode(raw)
    assert not marker.exists(), "sesstool ran the payload"
    assert name == "pickle"
    assert data is not None
    evil = data["evil"]
    assert isinstance(evil, OpaqueObject)
    assert evil.class_path == class_path
    assert class_path in repr(evil) and "not imported" in repr(evil)
    assert to_tagged(data)["evil"]["$object"]["class"] == class_path


def test_the_opaque_placeholder_keeps_the_call() -> None:
    raw = pickle.dumps({"evil": _Payload(os.system, "touch /nonexistent/x")}, 4)
    evil = safe_loads(raw)["evil"]
    assert evil == OpaqueObject("posix.system", args=["touch /nonexistent/x"])
    assert to_tagged(evil) == {"$object": {"class": "posix.system", "args": ["touch /nonexistent/x"]}}


def test_a_getattr_chain_records_every_step() -> None:
    evil = safe_loads(_getattr_chain(Path("/nonexistent/m"), 0))["evil"]
    assert evil.class_path == "builtins.getattr"
    import_os, attribute = evil.args
    assert import_os == OpaqueObject("builtins.__import__", args=["os"])
    assert attribute == "system"
    assert evil.calls == [["touch /nonexistent/m"]]


def test_nothing_named_in_a_pickle_is_imported() -> None:
    # "this" prints the Zen of Python on import; a pickle naming it must not import it.
    assert "this" not in sys.modules
    raw = b"(dp0\nS'zen'\ncthis\ns\ns."
    raw_call = b"(dp0\nS'zen'\ncthis\nrot13\n(tRs."
    assert serializers.decode(raw) == ("unknown", None)  # a bare reference is no value
    _, data = serializers.decode(raw_call)
    assert data == {"zen": OpaqueObject("this.rot13")}
    assert "this" not in sys.modules


@pytest.mark.parametrize("encoding", ["zlib_codec", "base64", "rot13", "hex", "utf-8", "utf-16", "bz2"])
def test_codecs_encode_with_another_encoding_is_refused(encoding: str) -> None:
    raw = b"(dp0\nS'x'\nc_codecs\nencode\n(Vabc\nS'" + encoding.encode() + b"'\ntRs."
    assert serializers.decode(raw) == ("unknown", None)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_loads(raw)


def test_codecs_encode_with_latin1_is_how_old_pickles_hold_bytes() -> None:
    raw = b"(dp0\nS'x'\nc_codecs\nencode\n(V\xe9\nS'latin1'\ntRs."
    assert safe_loads(raw) == {"x": b"\xe9"}


# -- objects of classes sesstool does not import ----------------------------------------------


class Plain:
    def __init__(self) -> None:
        self.user_id = 7
        self.tags = ["a"]


class Reduced:
    def __reduce__(self) -> tuple[t.Any, tuple[t.Any, ...]]:
        return Reduced, (1, "x")


class WithState:
    def __reduce__(self) -> tuple[t.Any, ...]:
        return (WithState, (), {"level": 3, "inner": Plain()})


class Roles(list):  # type: ignore[type-arg]
    pass


class Prefs(dict):  # type: ignore[type-arg]
    pass


class KwOnly:
    def __new__(cls, *args: t.Any, **kwargs: t.Any) -> KwOnly:
        return super().__new__(cls)

    def __getnewargs_ex__(self) -> tuple[tuple[t.Any, ...], dict[str, t.Any]]:
        return (1,), {"mode": "fast"}


class Hashable:
    def __reduce__(self) -> tuple[t.Any, tuple[t.Any, ...]]:
        return Hashable, ("h",)

    def __hash__(self) -> int:
        return 1


HERE = __name__


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_object_keeps_its_state(protocol: int) -> None:
    value = safe_loads(pickle.dumps({"user": Plain()}, protocol))["user"]
    assert isinstance(value, OpaqueObject)
    assert value.class_path == f"{HERE}.Plain"
    assert value.state == {"user_id": 7, "tags": ["a"]}
    assert value.new is (protocol >= 2)  # NEWOBJ from protocol 2 on, copyreg before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reduce_keeps_the_arguments(protocol: int) -> None:
    value = safe_loads(pickle.dumps([Reduced()], protocol))[0]
    assert value == OpaqueObject(f"{HERE}.Reduced", args=[1, "x"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_build_state_with_nested_objects(protocol: int) -> None:
    value = safe_loads(pickle.dumps({"w": WithState()}, protocol))["w"]
    assert value.class_path == f"{HERE}.WithState"
    assert value.state["level"] == 3
    inner = value.state["inner"]
    assert type(inner) is OpaqueObject and inner.class_path == f"{HERE}.Plain"
    assert inner.state == {"user_id": 7, "tags": ["a"]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_list_subclass_keeps_its_items(protocol: int) -> None:
    roles = Roles(["admin", "editor"])
    roles.source = "ldap"  # type: ignore[attr-defined]
    value = safe_loads(pickle.dumps({"roles": roles}, protocol))["roles"]
    assert value.class_path == f"{HERE}.Roles"
    # Protocol 2+ appends the items (APPENDS); 0 and 1 pass them to copyreg._reconstructor.
    captured = value.items if protocol >= 2 else value.args[0]
    assert captured == ["admin", "editor"]
    assert value.state == {"source": "ldap"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dict_subclass_keeps_its_items(protocol: int) -> None:
    prefs = Prefs(theme="dark", size=3)
    value = safe_loads(pickle.dumps({"prefs": prefs}, protocol))["prefs"]
    assert value.class_path == f"{HERE}.Prefs"
    captured = value.dict_items if protocol >= 2 else list(value.args[0].items())
    assert captured == [("theme", "dark"), ("size", 3)]


@pytest.mark.parametrize("protocol", [4, 5])
def test_newobj_ex_keeps_keyword_arguments(protocol: int) -> None:
    value = safe_loads(pickle.dumps({"k": KwOnly()}, protocol))["k"]
    assert value.class_path == f"{HERE}.KwOnly"
    assert value.args == [1]
    assert value.state == {"kwargs": {"mode": "fast"}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_opaque_objects_inside_sets_and_as_keys(protocol: int) -> None:
    data = safe_loads(pickle.dumps({"s": frozenset([Hashable()]), "d": {Hashable(): 1}}, protocol))
    (member,) = data["s"]
    assert type(member) is OpaqueObject and member.args == ["h"]
    (key,) = data["d"]
    assert type(key) is OpaqueObject and data["d"][key] == 1
    to_tagged(data)  # and it can be shown


class _Zone(dt.tzinfo):
    """A tzinfo of the app's own (pytz, zoneinfo, dateutil are the same to sesstool)."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def __reduce__(self) -> tuple[t.Any, tuple[t.Any, ...]]:
        return _Zone, ()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_datetime_with_a_foreign_tzinfo_keeps_the_rest_of_the_session(protocol: int) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=_Zone())
    name, data = serializers.decode(pickle.dumps({"user_id": 1, "when": when}, protocol))
    assert name == "pickle" and data is not None
    assert data["user_id"] == 1
    assert data["when"].class_path == "datetime.datetime"
    assert data["when"].args[1] == OpaqueObject(f"{HERE}._Zone")


# -- bytes that are no pickle, or a hostile one ---------------------------------------------------


def test_truncated_pickles_are_unknown_never_an_exception() -> None:
    raw = pickle.dumps({"user": Plain(), **ALLOWED_VALUES}, 4)
    # raw[:1] is b"\x80", which is a whole msgpack value: the empty map.
    assert serializers.decode(raw[:1]) == ("msgpack", {})
    for end in [0, *range(2, len(raw))]:
        assert serializers.decode(raw[:end]) == ("unknown", None), end
        assert serializers.decode(raw[:end], "pickle") == ("unknown", None), end


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f",  # a frame far longer than the data
        b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f",  # BINBYTES8 claiming 2**63 bytes
        b"\x80\x02X\xff\xff\xff\x7f",  # BINUNICODE claiming 2 GB
        b"(dp0\nS'x'\ncdecimal\nDecimal\n(S'not a number'\ntRs.",  # decimal.InvalidOperation
        b"(dp0\nS'x'\nc__builtin__\nunicode\n(S'x'\nS'no-such-codec'\ntRs.",  # LookupError
        b"(dp0\nS'x'\ncbuiltins\nstr\n(S'x'\nS'zlib_codec'\ntRs.",  # not a text encoding
        b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01h\x07s.",  # memo index never stored
        b"\x80\x02]q\x00(K\x01e.trailing",  # trailing bytes
        b"\x80\x02}q\x00X\x01\x00\x00\x00xP1\n.",  # persistent id
        b"\x80\x02cuuid\nUUID\n)\x81}X\x03\x00\x00\x00intX\x01\x00\x00\x00xsbX\x01\x00\x00\x00k\x86.",
    ],
)
def test_hostile_or_broken_pickles_are_unknown(raw: bytes) -> None:
    assert serializers.decode(raw) == ("unknown", None)
    assert serializers.decode(raw, "pickle") == ("unknown", None)


def test_a_huge_allocation_request_is_refused() -> None:
    # bytes(10**10): a 10 GB allocation from a 40-byte pickle.
    raw = b"(dp0\nS'x'\nc__builtin__\nbytes\n(I10000000000\ntRs."
    started = time.monotonic()
    assert serializers.decode(raw) == ("unknown", None)
    assert time.monotonic() - started < 1
    raw_array = b"(dp0\nS'x'\nc__builtin__\nbytearray\n(I10000000000\ntRs."
    assert serializers.decode(raw_array) == ("unknown", None)


def test_shared_references_that_expand_exponentially_are_refused() -> None:
    # 40 levels, each a pair holding the previous level twice: 2**40 values from 300 bytes.
    ops = [b"\x80\x02}X\x01\x00\x00\x00x", b"]q\x020"]  # memo 2: the innermost list
    for level in range(2, 42):
        ref = b"h" + bytes([level])
        ops.append(ref + ref + b"\x86q" + bytes([level + 1]) + b"0")
    ops.append(b"h" + bytes([42]) + b"s.")
    raw = b"".join(ops)
    assert len(raw) < 400
    # In a child process with a time limit: without the guard this would never end.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from sesstool.codecs import serializers; print(serializers.decode(sys.stdin.buffer.read()))",
        ],
        input=raw,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == b"('unknown', None)"


def test_reference_cycles_are_refused() -> None:
    loop: list[t.Any] = []
    loop.append(loop)
    assert serializers.decode(pickle.dumps({"loop": loop}, 4)) == ("unknown", None)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep: t.Any = "bottom"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    assert serializers.decode(pickle.dumps({"deep": deep}, 4)) == ("unknown", None)
    shallow: t.Any = "bottom"
    for _ in range(MAX_DEPTH - 5):
        shallow = [shallow]
    assert serializers.decode(pickle.dumps({"deep": shallow}, 4))[0] == "pickle"


def test_shared_references_within_reason_are_fine() -> None:
    roles = ["admin"] * 1000
    name, data = serializers.decode(pickle.dumps({"a": roles, "b": roles, "c": (roles, roles)}, 4))
    assert name == "pickle" and data is not None
    assert data["c"] == (roles, roles)


def test_a_large_pickle_decodes() -> None:
    session = {"blob": "x" * (10 * 1024 * 1024), "ids": list(range(200_000))}
    name, data = serializers.decode(pickle.dumps(session, 4))
    assert name == "pickle" and data == session


def test_safe_unpickler_is_a_drop_in_unpickler() -> None:
    import io

    assert SafeUnpickler(io.BytesIO(pickle.dumps({"a": (1,)}, 2))).load() == {"a": (1,)}


def test_a_huge_memo_index_allocates_nothing() -> None:
    # LONG_BINPUT 2**30: the C unpickler would size its memo list to 2**31 entries (16 GB).
    raw = b"\x80\x02}r\x00\x00\x00@."
    started = time.monotonic()
    assert serializers.decode(raw) == ("pickle", {})
    assert time.monotonic() - started < 1


def test_a_shared_subtree_cannot_smuggle_in_extra_depth() -> None:
    # The same 150-deep list at the top and again 150 levels down: 300 deep in all.
    inner: t.Any = "bottom"
    for _ in range(150):
        inner = [inner]
    outer: t.Any = inner
    for _ in range(150):
        outer = [outer]
    assert serializers.decode(pickle.dumps({"a": inner, "b": outer}, 4)) == ("unknown", None)
    assert serializers.decode(pickle.dumps({"a": inner}, 4))[0] == "pickle"
