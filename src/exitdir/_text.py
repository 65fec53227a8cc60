"""Text for people: what a marker, a name or a path may show on a terminal.

A marker's reason and name come from whoever wrote into the exit directory, and a path or a command from
whoever started us; none of them may drive the terminal (an ESC sequence, a carriage return that hides a
line) or make printing fail (a lone surrogate from undecodable bytes). ``--json`` output is exact instead:
``json.dumps`` escapes all of this itself.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` on one line, with every character a terminal must not interpret escaped as Python does.

    Control characters (C0, DEL, C1: ESC, CR, LF, TAB...) and what is not printable (lone surrogates,
    format and separator characters other than the space) become ``\\xNN``, ``\\uNNNN`` or
    ``\\UNNNNNNNN``. Backslashes are left as they are, so a reason like ``C:\\temp`` reads naturally
    (the exact text is in ``--json``).

    >>> printable("2 tests failed: caf\\xe9")
    '2 tests failed: café'
    >>> print(printable("\\x1b[31mred\\r\\nnext\\tx\\udcff"))
    \\x1b[31mred\\x0d\\x0anext\\x09x\\udcff
    """
    if text.isprintable():  # the usual case, at C speed
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"
