"""The join token as ``lxc cluster add`` prints it: base64 of LXD's JSON."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from lxflex.api.join import DATABASE_FILE, JoinError, JoinToken, accept_token


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


async def test_a_token_whose_member_cannot_be_reached_joins_nothing(tmp_path: Path) -> None:
    """No member answers at the token's address: nothing is kept, and the error says
    where it tried (never the secret)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = JoinToken("m2", "ab" * 32, [f"127.0.0.1:{port}"], "s3cr3t" * 10, "")
    with pytest.raises(JoinError, match=f"could be reached: 127.0.0.1:{port}") as caught:
        await accept_token(token, tmp_path)
    assert "s3cr3t" not in str(caught.value)
    assert not (tmp_path / DATABASE_FILE).exists()
