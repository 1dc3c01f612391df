"""The configuration reference names every setting there is."""

from __future__ import annotations

from pathlib import Path

from sytq.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = [
        "DEEPSEEK_API_KEY" if n == "deepseek_api_key" else f"SYTQ_{n.upper()}" for n in Settings.model_fields
    ]
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"
