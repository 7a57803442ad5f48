"""Change one session in place: ``--set``/``--unset`` on dotted paths, or ``$EDITOR``.

An edit never overwrites a newer write. :func:`edit_session` reads the session,
applies the change in Python, encodes it with the session's own serializer (only if
that serializer holds the result exactly, see :mod:`sesstool.codecs.fidelity`) and writes
it with the store's compare-and-set, which keeps the TTL. When the app wrote the
session in between, the compare fails, nothing is written, and the change is applied
again to the fresh value, up to :data:`RETRIES` times; then the edit fails (exit 3)
with the session as the app left it.

``--set`` and ``--unset`` re-apply as they are: ``--set cart.total=0`` sets that
key in the fresh value and keeps whatever else the app changed. An editor buffer is
re-applied key by key: the top-level keys the user changed are written into the
fresh value, unless the app changed one of those same keys meanwhile, which is a
conflict (exit 3, the buffer is kept).
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import tempfile
import typing as t
from dataclasses import dataclass, field

from sesstool.codecs.fidelity import encode_exact, fingerprint
from sesstool.codecs.picklewriter import protocol_of
from sesstool.codecs.tagged import from_tagged, to_tagged
from sesstool.errors import InvalidInput, StoreError, UndecodableValue
from sesstool.ops.listing import get_decoded
from sesstool.ops.records import Decoded, render_data
from sesstool.ops.selectors import parse_value, split_path
from sesstool.stores.base import Store, StoredItem

#: How many times a change is re-applied to a session the app keeps writing.
RETRIES = 8

Path = list[str]
Transform = t.Callable[[dict[t.Any, t.Any]], dict[t.Any, t.Any]]


class EditConflict(StoreError):
    """The session changed under an edit in a way the edit cannot be re-applied to (exit 3)."""


@dataclass
class Change:
    """``--unset`` paths (applied first) and ``--set`` path/value pairs, in order."""

    sets: list[tuple[Path, t.Any]] = field(default_factory=list)
    unsets: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sets or self.unsets)

    def describe(self) -> str:
        """``unset a; set b.c``, in the order they apply."""
        parts = [f"unset {'.'.join(path)}" for path in self.unsets]
        parts += [f"set {'.'.join(path)}" for path, _ in self.sets]
        return "; ".join(parts)


def parse_change(sets: t.Sequence[str], unsets: t.Sequence[str]) -> Change:
    """Parse ``KEY=VALUE`` and ``KEY`` arguments.

    ``VALUE`` is JSON when it is valid JSON, else a string; a JSON value may use the
    tagged form (``{"$datetime": "..."}``) for values JSON cannot hold.

    :raises InvalidInput: for an assignment without ``=`` or an empty path part.
    """
    change = Change()
    for path in unsets:
        change.unsets.append(split_path(path))
    for text in sets:
        field_text, sep, value_text = text.partition("=")
        if not sep or not field_text.strip():
            raise InvalidInput(f"invalid --set {text!r}: use KEY=VALUE (KEY may be a dotted path)")
        try:
            value = from_tagged(parse_value(value_text))
        except InvalidInput as e:
            raise InvalidInput(f"invalid --set {text!r}: {e}") from e
        change.sets.append((split_path(field_text), value))
    return change


def apply_change(data: dict[t.Any, t.Any], change: Change) -> tuple[dict[t.Any, t.Any], list[str]]:
    """A copy of ``data`` with ``change`` applied, and notes for paths ``--unset`` missed.

    Missing intermediate objects are created by ``--set``; a number indexes a list.

    :raises InvalidInput: when a path runs into a value that is not an object or list.
    """
    result = copy.deepcopy(data)
    notes = []
    for path in change.unsets:
        if not _unset(result, _literal(result, path)):
            notes.append(f"--unset {'.'.join(path)}: not in the session")
    for path, value in change.sets:
        _set(result, _literal(result, path), copy.deepcopy(value))
    return result, notes


def _literal(data: dict[t.Any, t.Any], path: Path) -> Path:
    # A top-level key that itself holds dots is meant as it is, not as a path.
    dotted = ".".join(path)
    return [dotted] if len(path) > 1 and dotted in data else path


def _child_key(container: dict[t.Any, t.Any], part: str) -> t.Any:
    # A session with integer keys (pickle, msgpack) is addressed by their digits.
    if part not in container and part.lstrip("-").isdigit() and int(part) in container:
        return int(part)
    return part


def _unset(data: dict[t.Any, t.Any], path: Path) -> bool:
    parent: t.Any = data
    for part in path[:-1]:
        if isinstance(parent, dict):
            parent = parent.get(_child_key(parent, part))
        elif isinstance(parent, list) and _index(parent, part) is not None:
            parent = parent[t.cast(int, _index(parent, part))]
        else:
            return False
    last = path[-1]
    if isinstance(parent, dict):
        key = _child_key(parent, last)
        if key in parent:
            del parent[key]
            return True
    elif isinstance(parent, list) and _index(parent, last) is not None:
        del parent[t.cast(int, _index(parent, last))]
        return True
    return False


def _set(data: dict[t.Any, t.Any], path: Path, value: t.Any) -> None:
    cursor: t.Any = data
    for depth, part in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        if isinstance(cursor, dict):
            key = _child_key(cursor, part)
            child = cursor.get(key)
            if child is None:
                child = cursor[key] = {}
            elif not isinstance(child, (dict, list)):
                raise InvalidInput(
                    f"cannot set {'.'.join(path)}: {where} holds {type(child).__name__}, not an object"
                )
            cursor = child
        elif isinstance(cursor, list):
            index = _index(cursor, part)
            if index is None:
                raise InvalidInput(f"cannot set {'.'.join(path)}: {where} is not an index of the list")
            cursor = cursor[index]
        else:  # pragma: no cover - guarded above
            raise InvalidInput(f"cannot set {'.'.join(path)}")
    last = path[-1]
    if isinstance(cursor, dict):
        cursor[_child_key(cursor, last)] = value
        return
    index = _index(cursor, last)
    if index is None:
        raise InvalidInput(f"cannot set {'.'.join(path)}: {last!r} is not an index of the list")
    cursor[index] = value


def _index(items: list[t.Any], part: str) -> int | None:
    if not part.lstrip("-").isdigit():
        return None
    index = int(part)
    return index if -len(items) <= index < len(items) else None


# -- the compare-and-set loop ------------------------------------------------------


@dataclass
class EditOutcome:
    """What an edit did: the session as written (or as found, when unchanged)."""

    decoded: Decoded
    changed: bool
    attempts: int


def edit_session(
    store: Store,
    key: bytes,
    transform: Transform,
    *,
    serializer: str = "auto",
    retries: int = RETRIES,
) -> EditOutcome:
    """Apply ``transform`` to the session at ``key`` and write it back atomically.

    ``transform`` gets the current data and returns the new data; it is called again
    with the fresh data each time the app wrote the session in between.

    :raises NotFound: when there is no such session (or it went away meanwhile).
    :raises UndecodableValue: when the session cannot be decoded, or its serializer
        cannot hold the result exactly (a pickled object of the app's classes).
    :raises StoreError: when the session kept changing for ``retries`` attempts.
    """
    for attempt in range(1, retries + 2):
        decoded = get_decoded(store, key, serializer)
        data = _editable_data(decoded)
        new_data = transform(data)
        if fingerprint(new_data) == fingerprint(data):
            return EditOutcome(decoded, changed=False, attempts=attempt)
        protocol = protocol_of(t.cast(bytes, decoded.item.value)) if decoded.serializer == "pickle" else None
        raw = encode_exact(new_data, decoded.serializer, protocol=protocol)
        if store.compare_and_set(decoded.item, raw):
            item = decoded.item
            # What was written, with no version: what the store read it with is stale now.
            written = StoredItem(item.key, raw, item.ttl, kind=item.kind)
            return EditOutcome(Decoded(written, decoded.serializer, new_data), changed=True, attempts=attempt)
    raise StoreError(
        f"{_name(key)} kept changing while being edited ({retries + 1} attempts): "
        "nothing was written; try again"
    )


def check_writable(decoded: Decoded) -> None:
    """Refuse, before anyone types a change, a session that cannot be written back
    even unchanged (a pickle holding an object of the app's own classes).

    :raises UndecodableValue: naming the value.
    """
    data = _editable_data(decoded)
    protocol = protocol_of(t.cast(bytes, decoded.item.value)) if decoded.serializer == "pickle" else None
    encode_exact(data, decoded.serializer, protocol=protocol)


def _editable_data(decoded: Decoded) -> dict[t.Any, t.Any]:
    """The session's data, if sesstool can represent it (else an edit could neither
    tell what changed nor write it back: it would "succeed" and change nothing).

    :raises UndecodableValue: (exit 4) naming the session; nothing is written.
    """
    name = _name(decoded.item.key)
    if decoded.data is None or decoded.item.value is None:
        raise UndecodableValue(f"cannot edit {name}: its value is not a msgpack, json or pickle session")
    try:
        render_data(decoded.data)
    except UndecodableValue as e:
        raise UndecodableValue(f"cannot edit {name}: {e.message}; nothing was written") from e
    return decoded.data


def _name(key: bytes) -> str:
    return repr(key.decode("utf-8", "backslashreplace"))


# -- $EDITOR ---------------------------------------------------------------------------


def editor_command() -> str:
    """``$VISUAL``, else ``$EDITOR``, else ``vi``: what git and kubectl run."""
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"


def render_document(data: dict[t.Any, t.Any]) -> str:
    """The lossless tagged JSON form an editor shows."""
    return json.dumps(to_tagged(data), indent=2, ensure_ascii=False) + "\n"


class EditorBuffer:
    """A session's tagged JSON in a temporary file that ``$EDITOR`` opens.

    The file is removed once the change is written (or found unchanged); on any
    failure it is kept and its path named, so no typing is lost.
    """

    def __init__(self, data: dict[t.Any, t.Any], key: bytes) -> None:
        self.original = render_document(data)
        safe = "".join(c if c.isalnum() else "-" for c in key.decode("utf-8", "replace"))[:40]
        fd, self.path = tempfile.mkstemp(prefix=f"sesstool-{safe}-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.original)

    def edit(self, command: str, ask_again: t.Callable[[str], bool]) -> dict[t.Any, t.Any] | None:
        """Open the editor until the buffer holds a valid session (or the user gives up).

        :param ask_again: asked with the problem when the buffer is invalid; ``True``
            reopens the editor, ``False`` aborts (exit 2, buffer kept).
        :returns: the edited data, or ``None`` when the buffer was left unchanged.
        """
        while True:
            self._run(command)
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
            if text == self.original:
                return None
            try:
                return self.parse(text)
            except InvalidInput as e:
                if not ask_again(e.message):
                    raise InvalidInput(f"{e.message}; nothing written, your edit is kept in {self.path}") from e

    @staticmethod
    def parse(text: str) -> dict[t.Any, t.Any]:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        if not isinstance(document, dict):
            raise InvalidInput("a session is a JSON object ({...})")
        data = from_tagged(document)
        if not isinstance(data, dict):
            raise InvalidInput("a session is a JSON object ({...})")
        return data

    def _run(self, command: str) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise InvalidInput(f"cannot parse the editor command {command!r}: {e}") from e
        try:
            completed = subprocess.run([*argv, self.path], check=False)
        except OSError as e:
            raise InvalidInput(f"cannot run the editor {command!r}: {e.strerror or e}; set $EDITOR") from e
        if completed.returncode != 0:
            raise InvalidInput(
                f"the editor {command!r} exited with status {completed.returncode}; "
                f"nothing written, the buffer is kept in {self.path}"
            )

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def editor_transform(base: dict[t.Any, t.Any], edited: dict[t.Any, t.Any], kept_in: str) -> Transform:
    """The change an editor buffer makes, re-applicable to a fresh value key by key.

    :raises EditConflict: (from the transform) when the app changed a key the user
        changed too.
    """
    base_prints = {key: fingerprint(value) for key, value in base.items()}
    edited_prints = {key: fingerprint(value) for key, value in edited.items()}
    touched = [key for key in {**base, **edited} if base_prints.get(key) != edited_prints.get(key)]

    def transform(fresh: dict[t.Any, t.Any]) -> dict[t.Any, t.Any]:
        if fingerprint(fresh) == fingerprint(base):
            return copy.deepcopy(edited)
        # A key absent on either side has no fingerprint (None).
        clashes = [key for key in touched if _print_of(fresh, key) != base_prints.get(key)]
        if clashes:
            names = ", ".join(str(k) for k in clashes[:5])
            raise EditConflict(
                f"the app changed {names} while you were editing it: nothing written, "
                f"your edit is kept in {kept_in}"
            )
        merged = copy.deepcopy(fresh)
        for key in touched:
            if key in edited:
                merged[key] = copy.deepcopy(edited[key])
            else:
                merged.pop(key, None)
        return merged

    return transform


def _print_of(data: dict[t.Any, t.Any], key: t.Any) -> bytes | None:
    return fingerprint(data[key]) if key in data else None
