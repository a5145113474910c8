import pickle

import pytest

from lxflex.secret import Secret


def test_secret_never_renders_its_value() -> None:
    s = Secret("hunter2-value")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in f"{s} {s!r} {s:>20}"
    assert "hunter2" not in repr({"password": s})
    assert s.reveal() == "hunter2-value"


def test_secret_compares_by_value_and_refuses_pickling() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert not Secret("")
    with pytest.raises(TypeError):
        pickle.dumps(Secret("a"))


def test_a_pool_record_never_shows_its_password() -> None:
    import datetime

    from lxflex.state import Status
    from lxflex.state.store import Pool

    pool = Pool(
        1,
        "pf",
        "powerflex",
        "",
        Status.CREATED,
        datetime.datetime.now(datetime.UTC),
        {"powerflex.gateway": "gw:443"},
        Secret("Sim-Passw0rd!"),
    )
    for text in (repr(pool), str(pool), f"{pool}", repr([pool])):
        assert "Sim-Passw0rd!" not in text
        assert "gw:443" in text
    assert pool.password is not None
    assert pool.password.reveal() == "Sim-Passw0rd!"  # the value stays
