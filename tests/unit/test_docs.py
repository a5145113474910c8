"""Every configuration key is documented in the README."""

from pathlib import Path

from lxflex.driver.config import POOL_KEYS, VOLUME_KEYS
from lxflex.service.trust import SERVER_KEYS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_config_key_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [key for key in [*POOL_KEYS, *VOLUME_KEYS] if f"| `{key}` |" not in text]
    assert missing == []


def test_every_server_key_is_in_the_readme_as_the_code_explains_it() -> None:
    text = README.read_text()
    missing = [
        key for key, text_of in SERVER_KEYS.items() if f"| `{key}` | {text_of} |" not in text
    ]
    assert missing == []
