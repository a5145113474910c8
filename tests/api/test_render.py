"""URL quoting in rendered resources: the fast path gives exactly what quote() gives."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from lxflex.api.render import _q


@given(st.text())
def test_names_quote_as_urllib_does(name: str) -> None:
    assert _q(name) == quote(name, safe="")
