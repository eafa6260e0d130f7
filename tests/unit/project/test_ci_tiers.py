"""The test tiers CI runs (``.ci/tiers``, read by ``.ci/run``): every folder of tests in
exactly one tier, the unit tier first and needing nothing, each tier one pytest call."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from tests.paths import REPO, TESTS

TEST_COMMAND = ".venv/bin/python -m pytest"
KNOWN_NEEDS = {"kafka", "deploy-tools"}
# A test or fixture asking for the session's broker (tests/kafka_fixtures.py).
USES_BROKER = re.compile(r"\bkafka_bootstrap: str\b")


@dataclass(frozen=True)
class Tier:
    name: str
    needs: frozenset[str]
    command: str

    @property
    def folder(self) -> str:
        return self.command.removeprefix(f"{TEST_COMMAND} ")


def tiers() -> list[Tier]:
    """The tiers as ``.ci/run --list`` prints them: the script's own reading of the file."""
    listed = subprocess.run(
        ["bash", str(REPO / ".ci" / "run"), "--list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    found = []
    for line in listed.splitlines():
        name, needs, command = line.split("\t")
        found.append(Tier(name, frozenset(needs.split(",")) - {"-"}, command))
    return found


def folders_with_tests() -> set[str]:
    return {
        path.relative_to(REPO).as_posix()
        for path in TESTS.iterdir()
        if path.is_dir() and any(path.rglob("test_*.py"))
    }


def test_every_folder_of_tests_is_in_exactly_one_tier() -> None:
    folders = [tier.folder for tier in tiers()]
    assert sorted(folders) == sorted(set(folders)), "a folder is in two tiers"
    assert set(folders) == folders_with_tests()


def test_no_test_file_sits_outside_the_tier_folders() -> None:
    assert sorted(path.name for path in TESTS.glob("test_*.py")) == []


def test_the_unit_tier_runs_first_and_needs_no_broker_or_tool() -> None:
    first = tiers()[0]
    assert (first.name, first.folder, first.needs) == ("unit", "tests/unit", frozenset())


def test_each_tier_runs_the_test_command_on_its_folder() -> None:
    for tier in tiers():
        assert tier.command == f"{TEST_COMMAND} {tier.folder}", tier
        assert (REPO / tier.folder).is_dir(), tier


def test_a_tier_whose_tests_use_the_broker_gets_one() -> None:
    for tier in tiers():
        assert tier.needs <= KNOWN_NEEDS, tier
        uses_broker = any(
            USES_BROKER.search(path.read_text()) for path in (REPO / tier.folder).rglob("*.py")
        )
        assert uses_broker == ("kafka" in tier.needs), tier
