"""Operators configure d06 from docs/operations.md's settings table: it must name every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from shared.settings import AggregateSettings, IngestSettings, QuerySettings

ROOT = Path(__file__).resolve().parents[2]


def documented() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Settings"):text.index("## Metrics")]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))


def variables(settings: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), "every setting is read from named environment variables"
        names |= {choice for choice in alias.choices if isinstance(choice, str)}
    return names


def test_every_environment_variable_is_documented() -> None:
    read = variables(IngestSettings) | variables(AggregateSettings) | variables(QuerySettings)
    devrun = set(re.findall(r'"(D06_DEV_[A-Z_]+)"', (ROOT / "shared" / "devrun.py").read_text()))
    devrun |= {f"D06_DEV_{name}_PORT" for name in ("INGEST", "AGGREGATE", "QUERY")}  # built from service names
    missing = (read | devrun) - documented()
    assert not missing, f"docs/operations.md, Settings, does not name {sorted(missing)}"
