"""The engine settings (no server needed): one-line errors naming the variable, the key kept secret."""

from __future__ import annotations

import pytest

from bot.app import generator_from
from bot.generation import Generator
from bot.generation.vllm import VllmEngine
from bot.settings import SettingsError, load_settings


def test_the_local_engine_is_the_default(settings_env) -> None:
    settings = load_settings()
    assert settings.engine == "local" and settings.engine_url == []
    assert isinstance(generator_from(settings, source=settings.model, version=0), Generator)


def test_vllm_takes_several_urls_and_keeps_the_key_secret(settings_env, monkeypatch) -> None:
    monkeypatch.setenv("THUMBTUNE_ENGINE", "vllm")
    monkeypatch.setenv("THUMBTUNE_ENGINE_URL", "http://gpu-a:8000/, http://gpu-b:8000")
    monkeypatch.setenv("THUMBTUNE_ENGINE_API_KEY", "sk-engine-secret-123")
    settings = load_settings()
    assert settings.engine_url == ["http://gpu-a:8000", "http://gpu-b:8000"]
    assert "sk-engine-secret-123" in settings.secret_values()  # masked in every log line (bot.logs)
    assert "sk-engine-secret-123" not in repr(settings)
    engine = generator_from(settings, source=settings.model, version=0)
    assert isinstance(engine, VllmEngine) and [r.url for r in engine.replicas] == settings.engine_url


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"THUMBTUNE_ENGINE": "vllm"}, "THUMBTUNE_ENGINE_URL: needed with THUMBTUNE_ENGINE=vllm"),
        ({"THUMBTUNE_ENGINE": "tgi"}, "THUMBTUNE_ENGINE: "),
        ({"THUMBTUNE_ENGINE_URL": "gpu-host:8000"}, "THUMBTUNE_ENGINE_URL: expected base URLs"),
        ({"THUMBTUNE_ENGINE_URL": "http://user:pw@gpu:8000"}, "THUMBTUNE_ENGINE_URL: must not carry a user"),
        ({"THUMBTUNE_ENGINE_URL": "http://a:1,http://a:1/"}, "THUMBTUNE_ENGINE_URL: names one server twice"),
    ],
)
def test_a_bad_engine_setting_is_one_line_naming_it(settings_env, monkeypatch, values, message) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert "pw@" not in str(refused.value)  # a password in a URL is never echoed
