from __future__ import annotations

import re
from pathlib import Path

import pytest

from bots.settings import BUNDLED_MODEL, REPO_ROOT, Settings, load_settings
from core.errors import ConfigError

EXAMPLE = REPO_ROOT / ".env.example"


def test_env_example_lists_every_setting_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = set(re.findall(r"^(PARLEY_\w+)=", EXAMPLE.read_text(), re.M))
    assert names == {f"PARLEY_{f.upper()}" for f in Settings.model_fields}
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    settings = load_settings()
    assert settings.model == BUNDLED_MODEL and settings.decode_overrides() == {}


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_DECODING", "sample")
    monkeypatch.setenv("PARLEY_TOP_P", "0.5")
    assert load_settings().decode_overrides() == {"method": "sample", "top_p": 0.5}


@pytest.mark.parametrize(
    ("name", "value"),
    [("PARLEY_BEAM_WIDTH", "0"), ("PARLEY_TOP_P", "1.5"), ("PARLEY_LOG_LEVEL", "LOUD")],
)
def test_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
