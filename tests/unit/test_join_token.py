"""The join token as ``lxc cluster add`` prints it: base64 of LXD's JSON."""

from __future__ import annotations

import base64
import json

import pytest

from lxflex.api.join import JoinError, JoinToken


def _encode(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_a_token_decodes_with_or_without_its_padding() -> None:
    doc = {
        "server_name": "m2",
        "fingerprint": "ab" * 32,
        "addresses": ["192.0.2.11:8443"],
        "secret": "s" * 64,
        "expires_at": "2026-12-01T22:00:00Z",
    }
    token = _encode(doc)
    assert JoinToken.decode(token.rstrip("=") + "\n") == JoinToken(
        "m2", "ab" * 32, ["192.0.2.11:8443"], "s" * 64, "2026-12-01T22:00:00Z"
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not base64 at all!", "not a cluster join token"),
        (_encode(["a", "list"]), "lacks its member name"),
        (_encode({"server_name": "m2", "fingerprint": "f"}), "lacks its member name"),
        (_encode({"server_name": "m2", "fingerprint": "f", "secret": "s"}), "no member addr"),
    ],
)
def test_what_is_no_token_says_so(text: str, said: str) -> None:
    with pytest.raises(JoinError, match=said):
        JoinToken.decode(text)
