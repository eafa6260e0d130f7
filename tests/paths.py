"""Where the checkout's parts are, for a test at any depth of the tree."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PACKAGE = REPO / "pipeline"
README = REPO / "README.md"
