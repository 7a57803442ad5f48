"""Property tests over every parser of untrusted text this area owns: cookies, signed ids,
HTTP responses (``decode --url``), store URLs, durations, times, ``--where`` and import
files. Properties: only sesstool's documented errors (never another exception), the
secrets stay masked, and round trips hold where one is defined.

Example counts are modest for CI; developers run a longer search with
``SESSTOOL_PROPERTY_SCALE=20 pytest tests/test_hostile_parsers.py`` (20 times the examples).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import typing as t
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sesstool import redact
from sesstool.cookies.fetch import fetch_cookie
from sesstool.cookies.format import decode_cookie, extract_cookie, sign_cookie, sign_sid
from sesstool.cookies.sids import resolve_sid
from sesstool.durations import MAX_DURATION, MAX_TIME, parse_duration, parse_time
from sesstool.errors import InvalidInput, SesstoolError, UndecodableValue
from sesstool.ops.importing import check_records, parse_record
from sesstool.ops.selectors import parse_all
from sesstool.render.terminal import printable
from tests.properties import examples

FEW = examples(200)
SOME = examples(50)

COOKIE_CHARS = st.sampled_from("ABCxyz019_-.=; :\"\n\t{}[]é\x00")
cookie_text = st.text(COOKIE_CHARS, max_size=80) | st.text(max_size=80)


@pytest.fixture(autouse=True)
def _fresh_secrets() -> t.Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


# -- the escaping and redaction routines themselves ----------------------------------------

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@FEW
@given(st.text())
def test_printable_leaves_no_control_character_and_keeps_safe_text(text: str) -> None:
    shown = printable(text)
    assert UNSAFE.search(shown) is None
    assert len(shown.splitlines()) <= 1
    if UNSAFE.search(text) is None:
        assert shown == text


@FEW
@given(st.text(min_size=redact.MIN_MASKED_LENGTH), st.text(), st.text())
def test_a_remembered_secret_never_survives_redaction(secret: str, before: str, after: str) -> None:
    redact.remember(secret)
    assert secret not in redact.redact(before + secret + after + secret)


userinfo_chars = st.characters(blacklist_characters=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0'\"",
                               blacklist_categories=("Zs", "Zl", "Zp", "Cc"))


@FEW
@given(st.text(userinfo_chars, min_size=1, max_size=30), st.sampled_from(["redis", "rediss", "redis+sentinel",
                                                                          "redis+cluster", "memcached"]))
def test_url_redaction_masks_any_password_even_in_urls_that_do_not_parse(password: str, scheme: str) -> None:
    assert redact.redact_url(f"failed: {scheme}://user:{password}@host:1/0 ok") == (
        f"failed: {scheme}://user:***@host:1/0 ok"
    )
    # (An "@" after the host reads as the end of a userinfo: masked there instead.)
    query_password = password.replace("&", "").replace("@", "")
    assume(query_password)
    assert redact.redact_url(f"x {scheme}://h:1/0?password={query_password} y") == (
        f"x {scheme}://h:1/0?password=*** y"
    )


# -- store URLs -----------------------------------------------------------------------------

url_rest = st.text(st.sampled_from("ab1:/@[]?=&%,.#-_ \x00é"), max_size=40)


@FEW
@given(st.sampled_from(["redis", "rediss", "unix", "redis+sentinel", "bogus", "REDIS", ""]), url_rest,
       st.text(st.sampled_from("pQ9/@:[]"), min_size=5, max_size=12))
def test_store_urls_open_or_fail_with_a_documented_error_never_quoting_the_password(
    scheme: str, rest: str, password: str
) -> None:
    from sesstool.stores import open_store

    assume("****" not in password)
    # A letter the rest of the URL never holds, so that the password cannot be
    # spelled by what redaction leaves ("***" + "@" + the host).
    assume(any(ch in "pQ9" for ch in password))
    url = f"{scheme}://u:{password}@{rest}"
    try:
        store = open_store(url)
    except SesstoolError as e:
        assert password not in redact.redact(str(e))
        assert e.exit_code in (2, 3)
    else:
        store.close()


# -- durations and times -------------------------------------------------------------------


@FEW
@given(st.text(max_size=30))
def test_durations_parse_in_range_or_fail_cleanly(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except InvalidInput:
        return
    assert 0 <= seconds <= MAX_DURATION


@FEW
@given(st.integers(0, MAX_DURATION), st.sampled_from([("", 1), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]))
def test_durations_round_trip(seconds: int, unit: tuple[str, int]) -> None:
    suffix, size = unit
    assert parse_duration(f"{seconds // size}{suffix}") == seconds // size * size


@FEW
@given(st.text(max_size=40) | st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,12})?", fullmatch=True))
def test_times_parse_to_aware_datetimes_or_fail_cleanly(text: str) -> None:
    try:
        moment = parse_time(text)
    except InvalidInput:
        return
    assert moment.tzinfo is not None
    assert moment.astimezone(timezone.utc) <= MAX_TIME


@FEW
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(timezone.utc)),
       st.integers(-23, 23))
def test_times_round_trip_through_iso_8601(moment: datetime, hours: int) -> None:
    shifted = moment.astimezone(timezone(timedelta(hours=hours)))
    assert parse_time(shifted.isoformat()) == moment
    whole = moment.replace(microsecond=0)
    assert parse_time(str(int(whole.timestamp()))) == whole


# -- cookies and signed ids ----------------------------------------------------------------


@FEW
@given(cookie_text, st.lists(st.text(min_size=1, max_size=8), max_size=2))
def test_cookie_text_decodes_or_fails_with_invalid_input(text: str, keys: list[str]) -> None:
    try:
        value = extract_cookie(text)
        decode_cookie(value, keys)
    except InvalidInput:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@FEW
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.text(min_size=1, max_size=10))
def test_signed_cookies_round_trip(data: dict[str, t.Any], key: str) -> None:
    decoded = decode_cookie(sign_cookie(data, key), [key])
    assert decoded.verified is True and decoded.data == data


@FEW
@given(cookie_text, st.text(max_size=10), st.lists(st.text(min_size=1, max_size=8), max_size=2))
def test_sid_arguments_resolve_or_fail_with_a_documented_error(text: str, prefix: str, keys: list[str]) -> None:
    try:
        ref = resolve_sid(text, prefix, keys)
    except SesstoolError as e:
        assert e.exit_code in (1, 2)
        return
    assert ref.key.startswith(prefix.encode("utf-8", "surrogateescape"))


@FEW
@given(st.from_regex(r"[A-Za-z0-9_-]{1,43}", fullmatch=True), st.text(min_size=1, max_size=10))
def test_signed_ids_round_trip(sid: str, key: str) -> None:
    assert resolve_sid(sign_sid(sid, key), "session:", [key]).sid == sid


# -- HTTP responses (decode --url) -----------------------------------------------------------


class OneShot:
    """A loopback server that answers each connection with the bytes it is given."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(1)
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture(scope="module")
def one_shot() -> t.Iterator[OneShot]:
    server = OneShot()
    yield server
    server.close()


http_replies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda status, headers, tail: b"HTTP/1.1 " + status + b"\r\n" + headers + b"\r\n\r\n" + tail,
        st.sampled_from([b"200 OK", b"302 Found", b"500 Oops", b"999 X", b"abc", b""]),
        st.lists(st.sampled_from([b"Set-Cookie: session=abc; Path=/", b"Set-Cookie: =", b"Set-Cookie: session",
                                  b"X: \xff\xfe", b"Content-Length: 5", b"bad header", b": x"]),
                 max_size=4).map(b"\r\n".join),
        st.binary(max_size=20),
    ),
)


@SOME
@given(http_replies)
def test_any_http_answer_gives_a_cookie_or_a_documented_error(one_shot: OneShot, reply: bytes) -> None:
    one_shot.reply = reply
    try:
        value = fetch_cookie(f"http://127.0.0.1:{one_shot.port}/", timeout=3)
    except SesstoolError as e:
        assert e.exit_code in (1, 3)
        return
    assert isinstance(value, str)


# -- --where ---------------------------------------------------------------------------------


@FEW
@given(st.lists(st.text(st.sampled_from("ab.0=!~[]()*+?\\{}\"1 "), max_size=12), min_size=1, max_size=3),
       st.dictionaries(st.text("ab0", max_size=2), json_values, max_size=3))
def test_where_expressions_compile_or_fail_cleanly_and_never_raise_on_data(
    exprs: list[str], data: dict[str, t.Any]
) -> None:
    try:
        predicate = parse_all(exprs)
    except InvalidInput:
        return
    if predicate is not None:
        assert predicate(data) in (True, False)


# -- import files ----------------------------------------------------------------------------

record_lines = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda sid, ttl, serializer, data: (
            '{"sid": ' + sid + ', "ttl": ' + ttl + ', "serializer": ' + serializer + ', "data": ' + data + "}"
        ),
        st.sampled_from(['"a"', '""', "1", '"a b"', '"a\\r\\nb"', "null", '"' + "x" * 300 + '"']),
        st.sampled_from(["0", "5", "-1", "1e3", "true", "null", "99999999999999999999", '"5"']),
        st.sampled_from(['"msgpack"', '"json"', '"pickle"', '"unknown"', '"yaml"', "3"]),
        st.sampled_from(["{}", '{"a": 1}', "[]", "null", '{"t": {"$tuple": [1]}}', '{"d": {"$datetime": "x"}}']),
    ),
)


@FEW
@given(record_lines)
def test_import_records_parse_or_fail_with_a_documented_error(line: str) -> None:
    try:
        key, value, ttl = parse_record(line, "session:")
    except (InvalidInput, UndecodableValue):
        return
    assert key.startswith(b"session:") and isinstance(value, bytes)
    assert ttl is None or 1 <= ttl <= MAX_DURATION


@FEW
@given(st.lists(record_lines | st.binary(max_size=30).map(lambda b: b.decode("latin-1")), max_size=6))
def test_checking_an_import_file_never_raises_and_counts_every_bad_line(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    checked = check_records(io.BytesIO(data), "session:")
    assert checked.entries is not None
    assert (checked.invalid == 0) == (checked.first_error is None)
    assert len(checked.entries) + checked.invalid <= len(data.split(b"\n"))


@pytest.mark.parametrize("expr", ["f~[[", "f~a{99999999999999999999}", "f~" + "(" * 1000 + ")" * 1000])
def test_hostile_regular_expressions_are_invalid_input_or_work(expr: str) -> None:
    try:
        predicate = parse_all([expr])
    except InvalidInput as e:
        assert "bad regular expression" in str(e)
    else:
        assert predicate is not None and predicate({"f": "[["}) in (True, False)


# -- the host list of store URLs (Redis Sentinel/Cluster, memcached) -------------------------

_hostnames = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
_ipv6 = st.ip_addresses(v=6).map(str)


@given(st.lists(st.tuples(st.one_of(_hostnames, _ipv6), st.one_of(st.none(), st.integers(1, 65535))),
                min_size=1, max_size=5))
def test_property_host_lists_parse_back_to_what_was_written(entries: list[tuple[str, int | None]]) -> None:
    from sesstool.stores.hosts import parse_hosts

    def spell(host: str, port: int | None) -> str:
        shown = f"[{host}]" if ":" in host else host
        return shown if port is None else f"{shown}:{port}"

    netloc = " , ".join(spell(host, port) for host, port in entries)
    assert parse_hosts(netloc, 6379) == [(host, 6379 if port is None else port) for host, port in entries]
    bare = [(host, 11211) for host, _ in entries if ":" in host]
    if bare:  # a bare IPv6 address takes the default port
        assert parse_hosts(",".join(host for host, _ in bare), 11211) == bare


@given(st.text(max_size=30))
def test_property_any_host_list_parses_or_is_invalid_input(netloc: str) -> None:
    from sesstool.stores.hosts import parse_hosts

    try:
        hosts = parse_hosts(netloc, 6379)
    except InvalidInput:
        return
    assert hosts and all(0 < port < 65536 and host for host, port in hosts)
