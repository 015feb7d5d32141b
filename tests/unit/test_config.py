from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from keel.config import Settings, packaged_chat_model, packaged_embedding_model


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("KEEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_need_no_file() -> None:
    settings = Settings()
    assert settings.data_dir == Path(".keel")
    assert settings.port == 8000
    assert settings.chat.alias == "keel-local"
    assert settings.sqlalchemy_url == f"sqlite:///{(Path('.keel') / 'keel.db').resolve()}"


def test_environment_overrides_including_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_PORT", "9001")
    monkeypatch.setenv("KEEL_DATA_DIR", "/srv/keel-a")
    monkeypatch.setenv("KEEL_CHAT__N_CTX", "8192")
    settings = Settings()
    assert settings.port == 9001
    assert settings.chat.n_ctx == 8192
    assert settings.sqlalchemy_url == "sqlite:////srv/keel-a/keel.db"


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text('port = 8100\nlog_json = false\n[chat]\nalias = "support-model"\n')
    monkeypatch.setenv("KEEL_PORT", "8200")
    settings = Settings()
    assert settings.chat.alias == "support-model"
    assert settings.log_json is False
    assert settings.port == 8200


def test_config_file_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('database_url = "postgresql+psycopg://keel@db/keel"\n')
    monkeypatch.setenv("KEEL_CONFIG_FILE", str(path))
    assert Settings().sqlalchemy_url == "postgresql+psycopg://keel@db/keel"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEEL_PORT", "0"),
        ("KEEL_LOG_LEVEL", "loud"),
        ("KEEL_CHAT__N_CTX", "10"),
        ("KEEL_COPILOT__INTENT_EXAMPLES", "/no/such/intents.jsonl"),
        ("KEEL_JOB_STALE_AFTER_S", "1"),
        ("KEEL_REVIEW__CLAIM_TTL_S", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text("prot = 8000\n")
    with pytest.raises(ValidationError, match="prot"):
        Settings()


def test_packaged_models_are_found_in_site_packages() -> None:
    assert packaged_chat_model().is_file()
    assert (packaged_embedding_model() / "model.safetensors").is_file()
