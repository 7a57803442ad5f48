"""Make untrusted text safe to show: one escaping routine for every human-facing line.

Keys, values and messages come from data that attackers write. On a terminal, an
escape sequence in them could move the cursor, fake rows or set the clipboard
(OSC 52), and a newline would fake a record. :func:`printable` shows every such
character visibly instead, the way Python's ``repr`` spells it (``\\x1b``, ``\\n``),
so the text stays readable and each record keeps one line.
"""

from __future__ import annotations

import re

# C0 controls and DEL, C1 controls, lone surrogates (unwritable to a UTF-8 stream),
# the Unicode line and paragraph separators (line breaks to str.splitlines and to
# many terminals and viewers) and the bidirectional overrides (which reorder what
# is shown, "Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control, separator and bidi characters written as escapes."""
    if _UNSAFE.search(text) is None:  # the common case costs one scan
        return text
    return _UNSAFE.sub(_escape, text)


def printable_lines(text: str) -> str:
    """:func:`printable` for each line of a text made of lines (``\n`` kept)."""
    if _UNSAFE.search(text) is None:
        return text
    return "\n".join(printable(line) for line in text.split("\n"))
