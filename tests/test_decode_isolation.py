"""Decoding one session can never change how another decodes.

A pickle that BUILDs (setattr) onto an allow-listed class or a shared object used to
change it for the rest of the process: later sessions decoded wrongly, and
``export`` / ``migrate --lossy`` wrote empty strings for good ones. Each case runs
in a child process (so a regression cannot poison the rest of the test run): it
decodes the poisoning value, then a good session, and reports what the good one
became, which must be exactly what it is in an untouched process.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import pickle
import subprocess
import sys
import uuid

import markupsafe
import pytest

from sesstool.codecs import fidelity, serializers
from sesstool.codecs.tagged import to_tagged
from tests.pickleops import MARK, call, global_, session, text

GOOD = {
    "m": markupsafe.Markup("<b>hi</b>"),
    "u": uuid.UUID(int=5, is_safe=uuid.SafeUUID.safe),
    "when": dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.timezone.utc),
    "od": collections.OrderedDict([("b", 1), ("a", 2)]),
    "pair": (1, "x"),
}

_CHILD = r"""
import json, sys, uuid
from sesstool.codecs import fidelity
from sesstool.codecs import serializers
from sesstool.codecs.tagged import to_tagged
poison, good = (bytes.fromhex(part) for part in sys.stdin.read().split())
first = serializers.decode(poison)[0]
name, data = serializers.decode(good)
print(json.dumps({
    "first": first,
    "name": name,
    "tagged": to_tagged(data),
    "lossy": to_tagged(fidelity.make_holdable(data, "json")[0]),
    "exact": fidelity.encode_exact(data, "pickle").hex(),
    "safe_uuid": [member.value for member in uuid.SafeUUID],
}))
"""

# BUILD with a (dict state, slot state) pair runs setattr on its target.
_SET_STR = MARK + b"N}" + text("__str__") + global_("builtins", "str") + b"s" + b"t" + b"b"

POISONS = {
    # Markup.__str__ = str: str(Markup("<b>hi</b>")) became "" everywhere.
    "setattr on Markup": session(global_("markupsafe", "Markup") + _SET_STR),
    # SafeUUID(0) is the enum's member SafeUUID.safe; its value became 99.
    "state on an enum member": session(call("uuid", "SafeUUID", b"K\x00") + b"}" + text("_value_") + b"Kcs" + b"b"),
    "setattr on OrderedDict": session(global_("collections", "OrderedDict") + _SET_STR),
    "setattr on a stand-in class": session(global_("myapp", "User") + _SET_STR),
    "state on timezone.utc": session(
        call("datetime", "timezone", call("datetime", "timedelta", b"K\x00")) + b"}" + text("x") + b"K\x01sb"
    ),
    "setattr on the pickle protocol's builder": session(global_("copyreg", "_reconstructor") + _SET_STR),
}


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoning_pickle_changes_nothing_for_later_sessions(poison: str, protocol: int) -> None:
    good = pickle.dumps(GOOD, protocol)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=f"{POISONS[poison].hex()} {good.hex()}",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["first"] == "unknown"  # the poisoning value itself is refused
    name, data = serializers.decode(good)
    assert report["name"] == name == "pickle"
    assert report["tagged"] == to_tagged(data)
    assert report["tagged"]["m"] == {"$markup": "<b>hi</b>"}
    assert report["lossy"] == to_tagged(fidelity.make_holdable(data, "json")[0])
    assert report["lossy"]["m"] == "<b>hi</b>"
    assert bytes.fromhex(report["exact"]) == fidelity.encode_exact(data, "pickle")
    assert report["safe_uuid"] == [member.value for member in uuid.SafeUUID]
