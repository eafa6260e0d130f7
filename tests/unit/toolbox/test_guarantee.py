"""The three guarantees, kept in step with the Avro enum the catalog writes them in."""

from __future__ import annotations

import json

import pytest

from pipeline.config import bundled_dir
from pipeline.errors import ConfigError
from pipeline.toolbox.guarantee import (
    AT_MOST_ONCE,
    GUARANTEES,
    IDEMPOTENT,
    KEYED,
    checked_guarantee,
)


def test_the_guarantees_are_the_symbols_of_the_catalogs_enum() -> None:
    enum = json.loads((bundled_dir("schemas") / "pipeline.events.ToolGuarantee.avsc").read_text())
    assert list(GUARANTEES) == enum["symbols"] == [IDEMPOTENT, KEYED, AT_MOST_ONCE]
    # A guarantee a reader does not know yet reads as the most cautious one.
    assert enum["default"] == AT_MOST_ONCE


def test_a_value_is_checked_by_name() -> None:
    assert checked_guarantee("refund", "keyed") == KEYED
    with pytest.raises(ConfigError, match="guarantee of tool 'refund' is 'Keyed'"):
        checked_guarantee("refund", "Keyed")
