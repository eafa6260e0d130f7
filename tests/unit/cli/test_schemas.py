"""``pipeline schemas check`` on a temporary git repository of the real schema files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.config import Settings, bundled_dir
from pipeline.events.wire import make_serde
from tests.registry_stand_in import StandInRegistry

MESSAGE = "pipeline.events.MessageReceived.avsc"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(bundled_dir("schemas"), tmp_path / "schemas")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "schemas v1")
    return tmp_path


def edit_message_schema(repo: Path, change: Any) -> None:
    path = repo / "schemas" / MESSAGE
    schema = json.loads(path.read_text())
    change(schema["fields"])
    path.write_text(json.dumps(schema, indent=2))


def commit(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "-am", message)


def check(repo: Path, *args: str, **env: str) -> Result:
    environment = {"PIPELINE_SCHEMAS_DIR": str(repo / "schemas"), **env}
    return CliRunner().invoke(main, ["schemas", "check", *args], env=environment)


def without(name: str) -> Any:
    def change(fields: list[dict[str, Any]]) -> None:
        fields[:] = [f for f in fields if f["name"] != name]

    return change


def test_a_field_added_without_default_fails(repo: Path) -> None:
    edit_message_schema(repo, lambda fields: fields.append({"name": "priority", "type": "int"}))
    commit(repo, "add priority")
    result = check(repo)
    assert result.exit_code == 1, result.output
    assert "INCOMPATIBLE pipeline.events.MessageReceived" in result.output
    assert "reader field missing default value" in result.output
    assert "priority" in result.output
    assert "HEAD~1" in result.output


def test_a_changed_type_fails(repo: Path) -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        next(f for f in fields if f["name"] == "text")["type"] = "long"

    edit_message_schema(repo, change)
    commit(repo, "text becomes a number")
    result = check(repo)
    assert result.exit_code == 1, result.output
    assert "type mismatch" in result.output
    assert "MessageReceived" in result.output


def test_removing_a_field_old_data_has_is_fine_but_not_one_the_reader_needs(repo: Path) -> None:
    # BACKWARD: the new reader ignores a field the old writer wrote; removing one is fine.
    edit_message_schema(repo, without("external_id"))
    commit(repo, "drop external_id")
    assert check(repo).exit_code == 0
    # Adding it back without its default: old data (without it) cannot be read.
    edit_message_schema(
        repo, lambda fields: fields.append({"name": "external_id", "type": "string"})
    )
    commit(repo, "external_id back, required")
    result = check(repo)
    assert result.exit_code == 1
    assert "external_id" in result.output


def test_a_field_added_with_a_default_passes(repo: Path) -> None:
    edit_message_schema(
        repo,
        lambda fields: fields.append({"name": "priority", "type": "int", "default": 0}),
    )
    commit(repo, "add priority with default")
    result = check(repo)
    assert result.exit_code == 0, result.output
    assert "schemas are backward compatible" in result.output


def test_the_last_release_tag_is_the_default(repo: Path) -> None:
    git(repo, "tag", "v1.0.0")
    edit_message_schema(repo, lambda f: f.append({"name": "a", "type": "int", "default": 0}))
    commit(repo, "compatible")
    edit_message_schema(repo, lambda f: f.append({"name": "b", "type": "int"}))
    commit(repo, "incompatible")
    result = check(repo)
    assert result.exit_code == 1
    assert "the last release tag v1.0.0" in result.output


def test_against_an_explicit_ref(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    edit_message_schema(repo, lambda f: f.append({"name": "b", "type": "int"}))
    commit(repo, "incompatible")
    edit_message_schema(repo, lambda f: f.append({"name": "c", "type": "int", "default": 0}))
    commit(repo, "compatible with the previous commit")
    assert check(repo).exit_code == 0  # HEAD~1 already had b
    result = check(repo, "--against", first)
    assert result.exit_code == 1
    assert f"--against {first}" in result.output


def test_nothing_to_compare_with_is_a_note_and_exit_zero(repo: Path) -> None:
    result = check(repo)  # a single commit: no tag, no merge base, no HEAD~1
    assert result.exit_code == 0, result.output
    assert "nothing to compare with" in result.output


def test_an_unknown_ref_is_an_error(repo: Path) -> None:
    result = check(repo, "--against", "no-such-ref")
    assert result.exit_code == 2
    assert "no-such-ref" in result.output


@pytest.fixture
def registry() -> Iterator[StandInRegistry]:
    with StandInRegistry() as running:
        yield running


def test_in_registry_mode_the_registry_refuses_the_change(
    repo: Path, registry: StandInRegistry
) -> None:
    env = {"PIPELINE_WIRE_FORMAT": "confluent", "PIPELINE_SCHEMA_REGISTRY__URL": registry.url}
    make_serde(
        Settings(
            schemas_dir=repo / "schemas",
            wire_format="confluent",
            schema_registry={"url": registry.url},
        )
    )
    assert check(repo, **env).exit_code == 0
    edit_message_schema(repo, lambda f: f.append({"name": "b", "type": "int"}))
    # Not committed: the history check sees no change, only the registry objects.
    result = check(repo, "--against", "HEAD", **env)
    assert result.exit_code == 1, result.output
    assert "INCOMPATIBLE message_received-value: the schema registry refuses it" in result.output
