import pytest

from lxflex.powerflex.policy import RetryPolicy, parse_gateway


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("gw.example", "https://gw.example:443"),
        ("gw.example:8443", "https://gw.example:8443"),
        ("10.0.0.5", "https://10.0.0.5:443"),
        ("https://gw.example", "https://gw.example:443"),
        ("https://gw.example/", "https://gw.example:443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8443", "https://[::1]:8443"),
        ("  gw.example  ", "https://gw.example:443"),
    ],
)
def test_parse_gateway(text: str, url: str) -> None:
    assert parse_gateway(text).url == url


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ftp://gw",
        "https://user:pw@gw",
        "https://gw/api",
        "https://gw?x=1",
        "gw:notaport",
        "https://:443",
    ],
)
def test_parse_gateway_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="gateway"):
        parse_gateway(text)


def test_retry_delays_are_bounded_and_grow() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff=0.1, multiplier=2, max_backoff=0.3, jitter=0)
    assert list(policy.delays()) == pytest.approx([0.1, 0.2, 0.3, 0.3])
    jittered = list(RetryPolicy(attempts=3, initial_backoff=1, jitter=0.5).delays())
    assert len(jittered) == 2
    assert all(0.5 <= d <= 2 for d in jittered)


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)
    assert list(RetryPolicy(attempts=1).delays()) == []
