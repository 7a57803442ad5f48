"""``export``: sessions as NDJSON records, exactly, and the private files that hold them.

An export line is the contract's session record with ``data`` in the lossless
tagged form (:mod:`sesstool.codecs.tagged`)::

    {"sid": "abc", "key": "session:abc", "ttl": 2678399, "size": 93,
     "serializer": "msgpack", "data": {"user_id": 42, "_permanent": true}}

plus one field when needed, ``"raw"``: the stored bytes, standard base64. It is
present exactly when importing ``data`` alone would not write the stored bytes back:
a value nothing decodes (``serializer: "unknown"``, ``data: null``), a pickle holding
objects of the app's own classes (shown as ``$object``, never re-created), a pickle
of another protocol than Python's default or one that shares an object between two
places (a memo reference), or any other value whose encoding differs from what
sesstool writes. So every session comes back byte for byte
(:mod:`sesstool.ops.importing` reads them back).

A store whose keys hide the sid (a file store) exports ``sid: null`` with its own key.
"""

from __future__ import annotations

import base64
import json
import os
import typing as t

from sesstool.codecs import serializers
from sesstool.codecs.fidelity import encode_unchecked
from sesstool.codecs.tagged import from_tagged, is_own_tagged_form
from sesstool.errors import InvalidInput, UndecodableValue
from sesstool.ops.listing import Scan, iter_decoded
from sesstool.ops.records import (
    UNKNOWN,
    Decoded,
    decode_item,
    dumps,
    encode_line,
    isolated,
    make_record,
    sid_start,
    was_unrenderable,
)
from sesstool.ops.selectors import Predicate


def export_record(decoded: Decoded, prefix_length: int | None) -> dict[str, t.Any]:
    """The export line for one session (a contract record with ``data``, maybe ``raw``).

    Never fails for what the store holds: a session whose data cannot be rendered
    is exported as ``serializer: "unknown"`` with its stored bytes in ``raw``, which
    ``import`` writes back as they are.
    """
    value = decoded.item.value
    if value is not None and decoded.serializer == "msgpack" and _own_tagged_form(decoded.data):
        # Flask-Session 0.8's usual session: the data is its record's data as it is,
        # and import would write what msgspec writes for it (else raw keeps the bytes).
        record = make_record(decoded, prefix_length, with_data=False)
        record["data"] = decoded.data
        if encode_unchecked(t.cast(dict[t.Any, t.Any], decoded.data), "msgpack") != value:
            record["raw"] = base64.b64encode(value).decode("ascii")
        return record
    record = make_record(decoded, prefix_length, with_data=True)
    if value is None:
        return record
    try:
        would_write = isolated(_import_would_write, record)
    except UndecodableValue:
        would_write = None
    if would_write != value:
        record["raw"] = base64.b64encode(value).decode("ascii")
    return record


def _own_tagged_form(data: t.Any) -> bool:
    try:
        return data is not None and is_own_tagged_form(data)
    except RecursionError:
        return False  # the general path says why it cannot be shown


def _import_would_write(record: dict[str, t.Any]) -> bytes | None:
    """The bytes ``import`` would write for ``record`` (without ``raw``), found by
    running the import path on the record's JSON text: data rebuilt from text no
    longer shares objects the way a pickle's memo did, and import writes pickles
    with Python's default protocol, so only this says whether data alone is enough."""
    serializer = record["serializer"]
    if record["data"] is None or serializer == serializers.UNKNOWN:
        return None
    # Object identity matters only to pickle; msgpack and json skip the text round trip.
    tagged = json.loads(dumps(record["data"])) if serializer == "pickle" else record["data"]
    try:
        return encode_unchecked(from_tagged(tagged), serializer)
    except InvalidInput:
        return None


def iter_export(scan: Scan, where: Predicate | None = None) -> t.Iterator[dict[str, t.Any]]:
    """Export records of every session of ``scan`` that ``where`` selects."""
    prefix_length = sid_start(scan.store, scan.prefix)
    for decoded in iter_decoded(scan, where):
        record = export_record(decoded, prefix_length)
        if was_unrenderable(decoded, record):
            scan.counters.undecodable += 1
        yield record


def create_private_file(path: str, what: str) -> t.BinaryIO:
    """A new file only its owner may read (0600), for session data.

    Never an existing file, and never through a symlink planted at ``path``: with
    ``O_CREAT | O_EXCL`` the kernel refuses both (``O_NOFOLLOW`` says so twice).
    The mode is set at creation, so there is no moment when others could open it.

    :raises InvalidInput: when ``path`` exists (also as a symlink) or cannot be created.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{what} {path} already exists: choose a new name") from None
    except OSError as e:
        raise InvalidInput(f"cannot create {what} {path}: {e.strerror or e}") from e
    return os.fdopen(fd, "wb")


class BackupFile:
    """``purge --backup``: export lines of the sessions about to be deleted, each batch
    flushed and fsynced before that batch is deleted.

    :raises InvalidInput: when the file exists (a backup is never overwritten) or
        cannot be created.
    """

    def __init__(self, path: str, prefix: str, *, ids: bool = True) -> None:
        self.path = path
        self.prefix_length = len(prefix) if ids else None
        self.count = 0
        self._handle = create_private_file(path, "backup file")

    def write(self, selected: t.Sequence[Decoded]) -> int:
        """Write one line for every session in ``selected`` (those that cannot be
        rendered, as raw bytes); return how many could not be decoded.

        :raises InvalidInput: when the file cannot be written (then nothing of this
            batch may be deleted).
        """
        lines = []
        undecodable = 0
        for decoded in selected:
            if decoded.data is None and decoded.item.value is not None:
                decoded = decode_item(decoded.item)
            # export_record renders in isolation: every session gets its line.
            record = export_record(decoded, self.prefix_length)
            undecodable += record["serializer"] == UNKNOWN
            lines.append(encode_line(record))
        try:
            self._handle.write(b"".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as e:
            raise InvalidInput(f"cannot write backup file {self.path}: {e.strerror or e}") from e
        self.count += len(lines)
        return undecodable

    def close(self) -> None:
        self._handle.close()


# -- import ----------------------------------------------------------------------------
