"""What the environment of a test run says, read the same way by every test.

``CI``: set to anything but ``""``, ``0``, ``false``, ``no`` or ``off`` (in any case), it
means "this is CI", where a missing prerequisite (a Kafka broker, a tool such as helm or
Chromium) fails the test: nothing is skipped in CI. Elsewhere the test is skipped, saying
what is missing (:func:`skip_or_fail`).

``PIPELINE_*``: the pipeline's own settings. A test of settings, or one starting a
``pipeline`` process, must see only the ones it sets; the ``no_pipeline_settings`` fixture
(``tests/conftest.py``) clears them for a test, :func:`environment_without_settings` gives a
child process an environment without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import NoReturn

import pytest

CI_OFF = frozenset({"", "0", "false", "no", "off"})
SETTINGS_PREFIX = "PIPELINE_"


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``CI`` says this run is CI (see the module's docstring)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in CI_OFF


def skip_or_fail(reason: str) -> NoReturn:
    """Stop a test whose broker or tool is missing: fail it in CI, else skip it."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


def is_setting(name: str) -> bool:
    """Whether an environment variable is one of the pipeline's settings."""
    return name.upper().startswith(SETTINGS_PREFIX)


def environment_without_settings(*, drop: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment without any ``PIPELINE_*`` variable, nor those in ``drop``,
    for a child process that must see only the settings its test gives it."""
    dropped = set(drop)
    return {k: v for k, v in os.environ.items() if not is_setting(k) and k not in dropped}
