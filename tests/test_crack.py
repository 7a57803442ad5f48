"""sesstool.cookies.crack and ``sesstool crack``: the fast key search, checked against itsdangerous."""

from __future__ import annotations

import base64
import io
import json
import typing as t
from pathlib import Path

import pytest

from sesstool.cookies import crack as crack_module
from sesstool.cookies.crack import crack, read_chunks, search_chunk, target_for
from sesstool.cookies.format import sign_cookie, sign_sid
from sesstool.errors import InvalidInput

KEY = "correct horse"


def cookie_for(key: str | bytes = KEY, **kwargs: t.Any) -> str:
    return sign_cookie({"user_id": 42, "cart": list(range(30))}, key, **kwargs)


def wordlist(tmp_path: Path, text: str | bytes, name: str = "words.txt") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512", "md5"])
@pytest.mark.parametrize("salt", ["cookie-session", "flask-session", "my salt"])
@pytest.mark.parametrize("key", ["k", "correct horse", "ü" * 100, b"\x00\xff raw"])
def test_hot_path_agrees_with_itsdangerous(digest: str, salt: str, key: str | bytes) -> None:
    import hashlib

    from itsdangerous import Signer

    cookie = cookie_for(key, salt=salt, digest=digest)
    target = target_for(cookie, salt=salt, digest=digest)
    signer = Signer(key, salt=salt, key_derivation="hmac", digest_method=getattr(hashlib, digest))
    expected = base64.urlsafe_b64decode(signer.get_signature(target.signed) + b"==")
    raw = key.encode() if isinstance(key, str) else key
    assert expected == target.signature
    assert search_chunk(target, b"nope\n" + raw + b"\nother") == (key, 3)
    assert search_chunk(target, b"nope\nother") == (None, 2)


def test_compressed_cookie_signature_covers_the_leading_dot() -> None:
    cookie = sign_cookie({"a": "x" * 200}, KEY)
    assert cookie.startswith(".")
    assert search_chunk(target_for(cookie), KEY.encode())[0] == KEY


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        (b"a\r\nb\r\ncorrect horse\r\nc\r\n", KEY),  # CRLF
        (b"a\n\n\ncorrect horse", KEY),  # blank lines, no final newline
        (b"a\n'correct horse'\nb\n", KEY),  # flask-unsign's quoted literals
        (b'a\n"correct horse"\nb\n', KEY),
        (b"a\nb'correct horse'\n", b"correct horse"),
        (b"a\n  correct horse \t\n", KEY),  # spaces around, as flask-unsign strips
        (b"'broken\ncorrect horse\n", KEY),
    ],
)
def test_wordlist_forms(lines: bytes, found: str | bytes) -> None:
    assert search_chunk(target_for(cookie_for()), lines)[0] == found


def test_quoted_literal_spelling_bytes() -> None:
    cookie = cookie_for(b"\x00\xfe")
    assert search_chunk(target_for(cookie), b"x\nb'\\x00\\xfe'\ny")[0] == b"\x00\xfe"


def test_signed_session_id_uses_flask_session_salt() -> None:
    sid = "Xy3-q2sF0y0C1mM8o3b0dZ1oK3tL0nB9YwW9uJw7a2Q"
    target = target_for(sign_sid(sid, KEY))
    assert target.salt == b"flask-session"
    assert search_chunk(target, b"a\ncorrect horse\n")[0] == KEY


def test_read_chunks_cuts_at_line_ends() -> None:
    data = b"".join(b"word%d\n" % i for i in range(1000)) + b"last"
    chunks = list(read_chunks(io.BytesIO(data), 100))
    assert all(len(chunk) < 200 for chunk in chunks)
    assert b"\n".join(chunks) == data
    assert [w for c in chunks for w in c.split(b"\n")][-1] == b"last"


def test_read_chunks_refuses_endless_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crack_module, "MAX_LINE", 1000)
    with pytest.raises(InvalidInput, match="line longer than"):
        list(read_chunks(io.BytesIO(b"x" * 5000), 100))


class CountingStream(io.RawIOBase):
    """An endless wordlist that counts what was read: the key is on line 3."""

    def __init__(self) -> None:
        self.read_bytes = 0
        self.served = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        head = b"a\nb\ncorrect horse\n" if self.served == 0 else b""
        block = (head + b"filler-word\n" * (size // 12 + 1))[:size]
        self.served += 1
        self.read_bytes += len(block)
        return block


@pytest.mark.parametrize("jobs", [1, 2])
def test_streams_and_stops_at_the_key(jobs: int) -> None:
    stream = CountingStream()
    result = crack(target_for(cookie_for()), t.cast(t.BinaryIO, stream), jobs=jobs, chunk_size=4096)
    assert result.secret_key == KEY
    assert stream.read_bytes <= 4096 * (2 * jobs + 2)  # a few chunks in flight, never the list


def test_processes_over_many_chunks(tmp_path: Path) -> None:
    words = [b"w%06d" % i for i in range(30_000)]
    words[-7] = KEY.encode()
    path = wordlist(tmp_path, b"\n".join(words))
    with open(path, "rb") as handle:
        result = crack(target_for(cookie_for()), handle, jobs=2, chunk_size=8192)
    assert result.secret_key == KEY
    assert result.candidates >= 30_000 - 8192 // 8 * 4
    with open(path, "rb") as handle:
        result = crack(target_for(cookie_for("absent")), handle, jobs=2, chunk_size=8192)
    assert (result.secret_key, result.candidates) == (None, 30_000)


def test_progress_reports(tmp_path: Path) -> None:
    path = wordlist(tmp_path, "\n".join(f"w{i}" for i in range(5000)))
    seen: list[t.Any] = []
    with open(path, "rb") as handle:
        crack(target_for(cookie_for()), handle, jobs=1, total_bytes=Path(path).stat().st_size,
              progress=seen.append, chunk_size=2048)  # fmt: skip
    assert len(seen) > 3
    assert seen[-1].candidates == 5000 and seen[-1].done_bytes == Path(path).stat().st_size
    assert seen[1].eta is not None and seen[1].rate > 0


# --- CLI ------------------------------------------------------------------------------


def test_cli_prints_the_key(cli: t.Any, tmp_path: Path) -> None:
    result = cli("crack", cookie_for(), "--wordlist", wordlist(tmp_path, "a\nb\ncorrect horse\n"))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "correct horse\n", "")


def test_cli_json(cli: t.Any, tmp_path: Path) -> None:
    result = cli("crack", cookie_for(), "-w", wordlist(tmp_path, "a\ncorrect horse\n"), "--format", "json")
    record = result.json()
    assert list(record) == ["secret_key", "candidates", "seconds"]
    assert record["secret_key"] == KEY and record["candidates"] == 2
    assert isinstance(record["seconds"], float)


def test_cli_bytes_key(cli: t.Any, tmp_path: Path) -> None:
    path = wordlist(tmp_path, "b'\\x00\\xfe'\n")
    assert cli("crack", cookie_for(b"\x00\xfe"), "-w", path).stdout == "b'\\x00\\xfe'\n"
    record = cli("crack", cookie_for(b"\x00\xfe"), "-w", path, "--format", "json").json()
    assert record["secret_key"] == {"$bytes": "AP4="}


def test_cli_no_match_exits_1(cli: t.Any, tmp_path: Path) -> None:
    path = wordlist(tmp_path, "a\nb\n")
    result = cli("crack", cookie_for(), "-w", path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: no key in the wordlist matched (2 candidates in 0s)\n" or (
        result.stderr.startswith("error: no key in the wordlist matched (2 candidates")
        and result.stderr.count("\n") == 1
    )
    result = cli("crack", cookie_for(), "-w", path, "--format", "json")
    assert result.exit_code == 1 and result.json()["secret_key"] is None


def test_cli_wordlist_from_stdin_and_header_cookie(cli: t.Any) -> None:
    result = cli("crack", f"Cookie: session={cookie_for()}", "-w", "-", input="x\ncorrect horse\n")
    assert (result.exit_code, result.stdout) == (0, "correct horse\n")


def test_cli_custom_salt_and_digest(cli: t.Any, tmp_path: Path) -> None:
    cookie = cookie_for(salt="s", digest="sha256")
    path = wordlist(tmp_path, "correct horse\n")
    assert cli("crack", cookie, "-w", path).exit_code == 1
    assert cli("crack", cookie, "-w", path, "--salt", "s", "--digest", "SHA-256").stdout == "correct horse\n"


def test_cli_progress_only_on_a_terminal(cli: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crack_module, "CHUNK_SIZE", 4096)
    path = wordlist(tmp_path, "\n".join(f"w{i}" for i in range(40_000)))
    quiet = cli("crack", cookie_for(), "-w", path, "--jobs", "1")
    assert quiet.exit_code == 1 and quiet.stderr.count("\n") == 1
    shown = cli("crack", cookie_for(), "-w", path, "--jobs", "1", stderr_isatty=True)
    assert shown.exit_code == 1
    assert "crack: " in shown.stderr and "/s)" in shown.stderr and "ETA" in shown.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["crack", "not a cookie", "-w", "{words}"], 2, "not a Flask session cookie"),
        (["crack", "{cookie}", "-w", "{missing}"], 2, "cannot read --wordlist"),
        (["crack", "{cookie}", "-w", "{words}", "--jobs", "0"], 2, "--jobs"),
        (["crack", "{cookie}", "-w", "{words}", "--digest", "nope"], 2, "unknown digest"),
        (["crack", "-", "-w", "-"], 2, "cannot both be stdin"),
        (["crack", "{cookie}"], 2, "--wordlist"),
    ],
)
def test_cli_errors(cli: t.Any, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    names = {
        "words": wordlist(tmp_path, "a\n"),
        "missing": str(tmp_path / "missing.txt"),
        "cookie": cookie_for(),
    }
    result = cli(*[arg.format(**names) for arg in args])
    assert result.exit_code == code
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_cli_finds_key_with_every_core(cli: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crack_module, "CHUNK_SIZE", 16384)
    words = [f"w{i:06d}" for i in range(60_000)] + [KEY]
    result = cli("crack", cookie_for(), "-w", wordlist(tmp_path, "\n".join(words)), "--format", "json")
    record = json.loads(result.stdout)
    assert result.exit_code == 0 and record["secret_key"] == KEY
