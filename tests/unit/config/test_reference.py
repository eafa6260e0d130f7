"""The settings reference page is generated from the settings classes, and every setting
has a description to put on it."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.config.env_names import setting_names, unknown_variables
from pipeline.config.reference import COMMAND, fields_without_description, render
from tests.paths import REPO

PAGE = REPO / "docs" / "reference" / "settings.md"


def test_every_setting_has_a_description() -> None:
    assert fields_without_description() == [], (
        "settings without a description (give each Field a description=...)"
    )


def test_the_committed_page_is_what_the_generator_writes() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        f"docs/reference/settings.md is stale: regenerate it with `.venv/bin/{COMMAND}`"
    )


def test_the_page_names_every_variable() -> None:
    page = render()
    leaves = [name for name in setting_names(Settings) if f"`{name}__" not in page]
    missing = [name for name in leaves if f"`{name}`" not in page]
    assert missing == []


def test_a_field_without_a_description_is_found() -> None:
    from pydantic import BaseModel, Field

    class Section(BaseModel):
        said: int = Field(1, description="Has one.")
        silent: int = 2

    class Root(BaseModel):
        section: Section = Field(default_factory=Section, description="A section.")

    assert fields_without_description(Root) == ["PIPELINE_SECTION__SILENT"]


def test_an_unknown_variable_points_to_the_reference() -> None:
    [problem] = unknown_variables({"PIPELINE_QWXJKVQ_ZZPQ_YYYY_QQQQ": "1"}, Settings)
    assert "docs/reference/settings.md" in problem
