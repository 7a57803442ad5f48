"""``--where`` expressions: select sessions by their data.

``FIELD=VALUE``, ``FIELD!=VALUE``, ``FIELD~REGEX``, ``FIELD`` (present), ``!FIELD``
(absent). ``FIELD`` is a dotted path into nested objects (a number indexes a list).
``VALUE`` is parsed as JSON when it is valid JSON, else taken as a string, so
``user_id=42`` matches the integer 42 and ``name=bob`` the string "bob".
"""

from __future__ import annotations

import json
import re
import typing as t
import warnings

from sesstool.codecs.tagged import to_tagged
from sesstool.errors import InvalidInput

_MISSING = object()
#: What :func:`lookup` returns for a path that is not there.
MISSING = _MISSING
_EXPR = re.compile(r"(?P<field>[^=!~]+?)\s*(?P<op>!=|=|~)(?P<value>.*)", re.DOTALL)
_PRESENCE = re.compile(r"(?P<neg>!?)\s*(?P<field>[^=!~]+)")

Predicate = t.Callable[[dict[t.Any, t.Any]], bool]


def parse_value(text: str) -> t.Any:
    """JSON when ``text`` is valid JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_path(field: str) -> list[str]:
    parts = field.strip().split(".")
    if not all(parts):
        raise InvalidInput(f"invalid field path {field!r}: empty part between dots")
    return parts


def lookup(data: t.Any, path: t.Sequence[str]) -> t.Any:
    """The value at ``path`` in ``data``, or a sentinel when any step is missing."""
    current = data
    for part in path:
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, (list, tuple)) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _same(actual: t.Any, expected: t.Any) -> bool:
    # JSON true is not the number 1, and a datetime matches its tagged form.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, (int, float, str, type(None))) and type(actual) in (int, float, str, type(None)):
        return bool(actual == expected)
    if isinstance(actual, (dict, list)) and actual == expected:
        return True
    try:
        return bool(to_tagged(actual) == expected) or (isinstance(expected, str) and str(actual) == expected)
    except TypeError:
        return False


def _text(value: t.Any) -> str:
    """What a regex sees: strings as they are, dates as ISO 8601, the rest as JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    try:
        return json.dumps(to_tagged(value), separators=(",", ":"), ensure_ascii=False)
    except TypeError:
        return str(value)


def parse_where(expr: str) -> Predicate:
    """Compile one ``--where`` expression into a predicate over session data.

    :raises InvalidInput: when the expression does not parse.
    """
    text = expr.strip()
    match = _EXPR.fullmatch(text)
    if match and match.group("field").strip() and not match.group("field").startswith("!"):
        path = split_path(match.group("field"))
        # Spaces around the operator are layout; quote a value in JSON to keep them.
        op, raw = match.group("op"), match.group("value").strip()
        if op == "~":
            try:
                # FutureWarning ("possible nested set"): the pattern still compiles
                # and works; a stray warning line is not the user's answer.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    pattern = re.compile(raw)
            except (re.error, OverflowError, RecursionError) as e:  # a{99999999999}, deep groups
                raise InvalidInput(f"invalid --where {expr!r}: bad regular expression: {e}") from e
            return lambda data: (v := lookup(data, path)) is not _MISSING and pattern.search(_text(v)) is not None
        expected = parse_value(raw)
        if len(path) == 1 and type(expected) in (int, str):
            return _fast_equality(path[0], expected, negate=op == "!=")
        if op == "=":
            return lambda data: (v := lookup(data, path)) is not _MISSING and _same(v, expected)
        return lambda data: (v := lookup(data, path)) is _MISSING or not _same(v, expected)
    presence = _PRESENCE.fullmatch(text)
    if presence and presence.group("field").strip():
        path = split_path(presence.group("field"))
        if presence.group("neg"):
            return lambda data: lookup(data, path) is _MISSING
        return lambda data: lookup(data, path) is not _MISSING
    raise InvalidInput(f"invalid --where {expr!r}: use FIELD=VALUE, FIELD!=VALUE, FIELD~REGEX, FIELD or !FIELD")


def _fast_equality(field: str, expected: int | str, *, negate: bool) -> Predicate:
    """``user_id=42`` on a top-level key: the case every on-call engineer types."""
    kind = type(expected)

    def equal(data: dict[t.Any, t.Any]) -> bool:
        value = data.get(field, _MISSING)
        if type(value) is kind:
            return bool(value == expected)
        return value is not _MISSING and _same(value, expected)

    if negate:
        return lambda data: field not in data or not equal(data)
    return equal


def parse_all(exprs: t.Sequence[str]) -> Predicate | None:
    """One predicate that holds when every expression does (``None`` for none)."""
    predicates = [parse_where(expr) for expr in exprs]
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]
    return lambda data: all(predicate(data) for predicate in predicates)
