"""Every setting is documented: in the docs site (docs/) and in .env.example (the template operators copy)."""

from __future__ import annotations

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
