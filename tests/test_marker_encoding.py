"""The leader's encoder writes, byte for byte, what ``json.dumps(doc, ensure_ascii=False,
separators=(",", ":"))`` wrote before it (issue 15: the same bytes, without json's cold cost).

Random reasons and names of every kind of code point (lone surrogates, NUL, U+2028, quotes, backslashes,
emoji, the 4096-character limit and beyond): the encoded line must parse back, and re-dumping what it
parsed with json.dumps must give the very same bytes.
"""

from __future__ import annotations

import json
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from exitdir._config import validate_name
from exitdir._errors import ExitDirError
from exitdir._marker import MAX_REASON_CHARS, encode, utf8_text

from _support import GENEROUS, python

ANY_CHARACTER = st.characters(exclude_categories=())
SPECIAL = st.sampled_from(['"', "\\", "\x00", "\n", "\u2028", "\u2029", "\x7f", "\ud800", "\U0001f600", "é"])
TEXT = st.lists(st.one_of(ANY_CHARACTER, SPECIAL), max_size=60).map("".join)


def _valid_name(text: str) -> bool:
    try:
        validate_name(text)
    except ExitDirError:
        return False
    return True


def _as_json_dumps_wrote(data: bytes) -> bytes:
    doc = json.loads(data.decode("utf-8"))
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@settings(max_examples=500, deadline=None)
@given(
    code=st.integers(0, 255),
    reason=st.one_of(
        st.none(), TEXT, st.integers(MAX_REASON_CHARS - 2, MAX_REASON_CHARS + 2).map("x".__mul__)
    ),
    name=TEXT.filter(_valid_name),
)
def test_the_encoded_marker_is_what_json_dumps_wrote(code: int, reason: str | None, name: str) -> None:
    data = encode(code, reason, name)
    assert data == _as_json_dumps_wrote(data)
    doc = json.loads(data)
    assert list(doc) == ["exitdir", "code", "reason", "name", "pid", "hostname", "time", "boot_id"]
    assert (doc["code"], doc["name"]) == (code, name)
    if reason is None:
        assert doc["reason"] is None
    else:
        safe = utf8_text(reason)
        assert doc["reason"] == (
            safe if len(safe) <= MAX_REASON_CHARS else safe[: MAX_REASON_CHARS - 1] + "…"
        )


def test_the_leader_path_imports_no_json() -> None:
    """`from exitdir import exit` and a first call load nothing of json (its C quoting function only)."""
    program = (
        "import sys, tempfile\nfrom exitdir import exit\nexit(directory=tempfile.mkdtemp())\n"
        "print(sorted(m for m in sys.modules if m == 'json' or m.startswith('json.')))"
    )
    done = subprocess.run(python(program), capture_output=True, text=True, timeout=GENEROUS, check=True)
    assert done.stdout == "[]\n"
