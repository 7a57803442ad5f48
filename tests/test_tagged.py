"""The lossless tagged JSON form (sesstool.codecs.tagged): what export/import and sign rely on."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import json
import math
import typing as t
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs.tagged import TAGS, MsgpackExt, contains_opaque, from_tagged, is_own_tagged_form, to_tagged
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import InvalidInput, UndecodableValue
from tests.properties import examples


def through_json(value: t.Any) -> t.Any:
    """to_tagged → JSON text → from_tagged, as export → import does."""
    text = json.dumps(to_tagged(value), allow_nan=False)  # NaN must never leak into JSON
    return from_tagged(json.loads(text))


def same(a: t.Any, b: t.Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True is not enough).

    NaN equals NaN here, Decimals compare by their exact text, and datetimes also by
    their offset, because the tagged form must keep all of those.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.isoformat() == b.isoformat()
    if isinstance(a, dict):  # dict and OrderedDict: same pairs in the same order
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        # Pair each member with its equal in b, then insist on the same types inside.
        members = {y: y for y in b}
        return len(a) == len(b) and all(x in members and same(x, members[x]) for x in a)
    if isinstance(a, OpaqueObject):
        return (
            a.class_path == b.class_path
            and same(a.args, b.args)
            and same(a.state, b.state)
            and same(a.items, b.items)
            and same(a.dict_items, b.dict_items)
            and a.new == b.new
            and same(a.calls, b.calls)
        )
    return bool(a == b)


# -- strategies ---------------------------------------------------------------------------

offsets = st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59))
timezones = st.builds(dt.timezone, offsets)
naive_datetimes = st.datetimes()
aware_datetimes = st.datetimes(timezones=timezones)
times = st.times() | st.times(timezones=timezones)
decimals = st.decimals(allow_nan=True, allow_infinity=True)
markups = st.text().map(Markup)

hashable_leaves = (
    st.text()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.binary()
    | st.booleans()
    | st.none()
    | st.uuids()
    | st.dates()
    | naive_datetimes
    | st.decimals(allow_nan=False)
    | markups
    | st.timedeltas()
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(hashable_leaves, max_size=3),
    max_leaves=6,
)

leaves = (
    hashable_leaves
    | st.floats()  # NaN, inf and -inf too
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.binary().map(bytearray)
    | st.complex_numbers()
    | aware_datetimes
    | times
    | decimals
    | st.sampled_from(["$bytes", "$dict", "$object", "", "$"])  # tag names as plain strings
)


def containers(inner: st.SearchStrategy[t.Any]) -> st.SearchStrategy[t.Any]:
    opaque = st.builds(
        OpaqueObject,
        class_path=st.sampled_from(["myapp.models.User", "posix.system", "builtins.getattr"]),
        args=st.lists(inner, max_size=2),
        state=st.none() | inner,
        items=st.lists(inner, max_size=2),
        dict_items=st.lists(st.tuples(hashables, inner), max_size=2),
        new=st.booleans(),
        calls=st.lists(st.lists(inner, max_size=2), max_size=2),
    )
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)  # int keys (msgpack, pickle)
        | st.dictionaries(hashables, inner, max_size=3)  # keys of any hashable type
        | st.dictionaries(st.text(), inner, max_size=3).map(lambda d: collections.OrderedDict(reversed(d.items())))
        | st.builds(lambda tag, v: {tag: v}, st.sampled_from(sorted(TAGS)), inner)  # looks like a tag
        | st.builds(MsgpackExt, st.integers(-128, 127), st.binary(max_size=8))
        | opaque
    )


values = st.recursive(leaves, containers, max_leaves=25)
sessions = st.dictionaries(st.text(), values, max_size=5)


# -- the round trip -------------------------------------------------------------------------


@examples(300)
@given(values)
def test_every_value_survives_json_text(value: t.Any) -> None:
    assert same(through_json(value), value)


@examples(100)
@given(sessions)
def test_a_session_survives_and_is_plain_json(session: dict[str, t.Any]) -> None:
    tagged = to_tagged(session)
    assert_plain_json(tagged)
    assert same(through_json(session), session)


def assert_plain_json(value: t.Any) -> None:
    """Only what JSON itself has: str-keyed objects, arrays, strings, finite numbers, bools, null."""
    if isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            assert_plain_json(item)
    elif isinstance(value, float):
        assert math.isfinite(value)
    else:
        assert value is None or type(value) in (str, int, bool)


# -- the documented forms, exactly --------------------------------------------------------------

UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "tagged"),
    [
        ({"user_id": 42, "ok": True, "x": None, "f": 1.5}, {"user_id": 42, "ok": True, "x": None, "f": 1.5}),
        (b"\x00\xffhi", {"$bytes": "AP9oaQ=="}),
        (bytearray(b"hi"), {"$bytearray": "aGk="}),
        ((1, "a"), {"$tuple": [1, "a"]}),
        ({3, 1, 2}, {"$set": [1, 2, 3]}),
        (frozenset({"b", "a"}), {"$frozenset": ["a", "b"]}),
        (dt.datetime(2026, 11, 21, 10, 0), {"$datetime": "2026-11-21T10:00:00"}),
        (dt.datetime(2026, 11, 21, 10, 0, 0, 5, tzinfo=UTC_PLUS_2), {"$datetime": "2026-11-21T10:00:00.000005+02:00"}),
        (dt.date(2026, 11, 21), {"$date": "2026-11-21"}),
        (dt.time(9, 30, tzinfo=dt.timezone.utc), {"$time": "09:30:00+00:00"}),
        (
            dt.time(0, 0, tzinfo=dt.timezone(dt.timedelta(microseconds=1))),
            {"$time": "00:00:00+00:00:00.000001"},
        ),
        (
            dt.datetime(2026, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=5, seconds=1, microseconds=5))),
            {"$datetime": "2026-01-01T00:00:00-05:00:01.000005"},
        ),
        (dt.timedelta(days=-1, seconds=5, microseconds=7), {"$timedelta": [-1, 5, 7]}),
        (dt.timedelta(hours=-23, seconds=5, microseconds=7), {"$timedelta": [-1, 3605, 7]}),
        (uuid.UUID(int=1), {"$uuid": "00000000-0000-0000-0000-000000000001"}),
        (decimal.Decimal("1.10"), {"$decimal": "1.10"}),
        (Markup("<b>hi</b>"), {"$markup": "<b>hi</b>"}),
        (float("nan"), {"$float": "nan"}),
        (float("-inf"), {"$float": "-inf"}),
        (complex(1, float("inf")), {"$complex": [1.0, {"$float": "inf"}]}),
        ({1: "a", "1": "b"}, {"$map": [[1, "a"], ["1", "b"]]}),
        (collections.OrderedDict([("b", 1), ("a", 2)]), {"$ordereddict": [["b", 1], ["a", 2]]}),
        ({"$bytes": "AA=="}, {"$dict": {"$bytes": "AA=="}}),
        ({"$foo": 1}, {"$foo": 1}),  # not a tag name: an ordinary dict
        (MsgpackExt(5, b"\x01"), {"$ext": [5, "AQ=="]}),
        (
            OpaqueObject("myapp.User", args=[], state={"id": 7}, new=True),
            {"$object": {"class": "myapp.User", "args": [], "state": {"id": 7}, "new": True}},
        ),
        (
            OpaqueObject("myapp.Roles", items=["admin"], dict_items=[("k", 1)], calls=[["x"]]),
            {
                "$object": {
                    "class": "myapp.Roles",
                    "args": [],
                    "items": ["admin"],
                    "dict_items": [["k", 1]],
                    "calls": [["x"]],
                }
            },
        ),
    ],
)
def test_documented_form(value: t.Any, tagged: t.Any) -> None:
    assert to_tagged(value) == tagged
    assert same(from_tagged(tagged), value)


def test_every_tag_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "tagged-json.md").read_text()
    for tag in TAGS:
        assert f'`{{"{tag}": ' in doc, f"{tag} is missing from docs/tagged-json.md"


def test_markupsafe_markup_is_tagged_as_markup() -> None:
    markupsafe = pytest.importorskip("markupsafe")
    assert to_tagged(markupsafe.Markup("<i>")) == {"$markup": "<i>"}
    assert type(from_tagged({"$markup": "<i>"})) is Markup


def test_several_keys_are_an_ordinary_dict_even_when_they_are_tag_names() -> None:
    value = {"$bytes": "AA==", "$uuid": "nope"}
    assert to_tagged(value) == value
    assert from_tagged(value) == value


def test_sets_print_in_a_repeatable_order() -> None:
    assert to_tagged({"b", "a", "c"}) == {"$set": ["a", "b", "c"]}
    mixed = {1, "a", (2, 3)}  # no order among the types: still the same every time
    assert to_tagged(mixed) == to_tagged(set(reversed(list(mixed))))


# -- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        {"$bytes": "not base64!"},
        {"$bytes": 5},
        {"$bytearray": "A"},
        {"$tuple": "ab"},
        {"$set": [[1, 2]]},  # a list is no set member
        {"$frozenset": {"a": 1}},
        {"$datetime": "yesterday"},
        {"$datetime": 1700000000},
        {"$date": "2026-13-01"},
        {"$time": "25:00"},
        {"$timedelta": [1, 2]},
        {"$timedelta": ["1", 0, 0]},
        {"$timedelta": [10**10, 0, 0]},
        {"$uuid": "xyz"},
        {"$decimal": "one"},
        {"$markup": ["<b>"]},
        {"$float": "NaN!"},
        {"$float": 1.0},
        {"$complex": [1]},
        {"$complex": ["1", 2]},
        {"$map": "ab"},
        {"$map": [[1]]},
        {"$map": ["ab"]},
        {"$map": [[{"a": 1}, 2]]},  # a dict is no key
        {"$ordereddict": [[1, 2, 3]]},
        {"$dict": [1]},
        {"$ext": [300, ""]},
        {"$ext": ["5", "AQ=="]},
        {"$ext": [5]},
        {"$object": "myapp.User"},
        {"$object": {"args": []}},
        {"$object": {"class": 7}},
        {"$object": {"class": "a.B", "args": {"x": 1}}},
        {"$object": {"class": "a.B", "new": "yes"}},
        {"$object": {"class": "a.B", "bogus": 1}},
        {"$object": {"class": "a.B", "calls": [1]}},
        [1, {"nested": {"$uuid": "xyz"}}],  # found wherever it is
    ],
)
def test_malformed_tags_are_invalid_input(tagged: t.Any) -> None:
    with pytest.raises(InvalidInput) as info:
        from_tagged(tagged)
    assert info.value.exit_code == 2
    assert "malformed $" in str(info.value)


def test_unsupported_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        to_tagged({"x": object()})


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    value: t.Any = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(UndecodableValue):
        to_tagged(value)
    text: t.Any = []
    for _ in range(5000):
        text = {"$tuple": [text]}
    with pytest.raises(InvalidInput):
        from_tagged(text)


# -- contains_opaque --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": [1, (2, {3})]}, False),
        ({"a": [1, (2, OpaqueObject("x.Y"))]}, True),
        ({OpaqueObject("x.Y"): 1}, True),
        (frozenset({OpaqueObject("x.Y")}), True),
        (collections.OrderedDict(a={"b": OpaqueObject("x.Y")}), True),
        (MsgpackExt(1, b""), False),
    ],
)
def test_contains_opaque(value: t.Any, expected: bool) -> None:
    assert contains_opaque(value) is expected


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5) | st.sampled_from(sorted(TAGS)),
                                                               inner, max_size=3),
    max_leaves=15,
)


@examples(300)
@given(json_like | values)
def test_own_tagged_form_means_both_conversions_give_it_back(value: t.Any) -> None:
    # export skips both conversions for such values: they must really be no-ops.
    if is_own_tagged_form(value):
        assert same(to_tagged(value), value) and same(from_tagged(value), value)
    else:
        assert not same(to_tagged(value), value)
