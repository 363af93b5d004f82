"""Every setting is documented: in the docs site (docs/) and in .env.example (the template operators copy)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _variables() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.append(alias or f"THUMBTUNE_{name.upper()}")
    return names


@pytest.mark.parametrize("document", ["docs", ".env.example"])
def test_every_setting_is_documented(document: str) -> None:
    path = ROOT / document
    pages = sorted(path.glob("*.md")) if path.is_dir() else [path]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    missing = [variable for variable in _variables() if variable not in text]
    assert not missing, f"{document} does not mention {missing}"
    assert len(_variables()) > 40  # the walk really found the settings


def _field_of(variable: str) -> str:
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        if (alias or f"THUMBTUNE_{name.upper()}") == variable:
            return name
    raise KeyError(variable)


def _as_set(variable: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> object:
    """``value`` read the way the bot reads ``variable`` from the environment."""
    from bot.settings import load_settings

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in list(os.environ):
        if name.startswith("THUMBTUNE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(variable, value)
    return getattr(load_settings(), _field_of(variable))


def test_the_defaults_in_env_example_are_the_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every uncommented line of .env.example sets its variable to the default the code has."""
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.startswith("THUMBTUNE_") and "=" in line]
    defaults = Settings.model_construct()
    wrong = {
        variable: value
        for variable, value in pairs
        if _as_set(variable, value, monkeypatch, tmp_path) != getattr(defaults, _field_of(variable))
    }
    assert len(pairs) > 30 and wrong == {}


def test_the_defaults_in_the_docs_settings_tables_are_the_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A settings table row `| `THUMBTUNE_X`[, ...] | `default`[, ...] | ... |` says the code's default."""
    row = re.compile(r"^\| ((?:`THUMBTUNE_[A-Z0-9_]+`(?:, )?)+) \| ((?:`[^`|]*`(?:, )?)+) \|", re.M)
    defaults = Settings.model_construct()
    checked, wrong = 0, {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        for names, values in row.findall(page.read_text(encoding="utf-8")):
            variables, shown = re.findall(r"`([^`]+)`", names), re.findall(r"`([^`]*)`", values)
            if len(variables) != len(shown):
                continue  # one value for several variables: prose, not a default each
            for variable, value in zip(variables, shown, strict=True):
                if value.startswith("$"):
                    continue  # derived from another setting (`$THUMBTUNE_DATA_DIR/...`): None in the code
                checked += 1
                if _as_set(variable, value, monkeypatch, tmp_path) != getattr(defaults, _field_of(variable)):
                    wrong[f"{page.name}: {variable}"] = value
    assert checked > 30 and wrong == {}
