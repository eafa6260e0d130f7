"""The image builds: its build stage, replayed without a Docker engine.

CI has no Docker engine (and no container registry for the base image), so the build
stage is checked for real on the host: the files the Dockerfile's COPY instructions put
in place are taken from the build context as Docker sends it (``.dockerignore`` applied),
the wheel is built from exactly those files, installed into a fresh virtual environment,
and the commands the image runs are run from there. A few static checks of the final
stage stay (non-root numeric user, only the venv copied, `pipeline` as the entry point).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploy_support import REPO
from tests.deploy.image_context import assemble, context_files, install_stage
from tests.environment import environment_without_settings

DOCKERFILE = (REPO / "Dockerfile").read_text()
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# The build stage, replayed: the wheel built, then installed with its dependencies into a
# fresh venv (from PyPI when pip's cache is cold), all within this many seconds. The first
# test using ``image_venv`` pays for it inside its own pytest timeout, so the module's
# timeout is this budget and a margin: pyproject's 600 s would otherwise stop it first.
BUILD_SECONDS = 900
pytestmark = pytest.mark.timeout(BUILD_SECONDS + 120)


def stages() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def build_wheel(source: Path, out: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env() -> dict[str, str]:
    """The environment without this checkout's settings or import paths."""
    return environment_without_settings(drop=["PYTHONPATH", "VIRTUAL_ENV"])


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel built from the Dockerfile's copied files installed."""
    work = tmp_path_factory.mktemp("image")
    started = time.monotonic()

    def seconds_left() -> float:
        return max(1.0, started + BUILD_SECONDS - time.monotonic())

    source = assemble(REPO, install_stage(DOCKERFILE), work / "root")
    built = build_wheel(source, work / "wheels", timeout=seconds_left())
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (work / "wheels").glob("*.whl")
    wheel_seconds = time.monotonic() - started
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=seconds_left())
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=seconds_left(),
        env=clean_env(),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(
        f"image build stage replayed: wheel in {wheel_seconds:.1f}s, fresh venv installed "
        f"in {time.monotonic() - started - wheel_seconds:.1f}s"
    )
    yield venv


def run_in(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "pipeline"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=venv.parent,  # not the checkout: nothing of the source tree can be imported
        env=clean_env(),
    )


def test_pipeline_version(image_venv: Path) -> None:
    result = run_in(image_venv, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"version {VERSION}")


def test_pipeline_events_from_the_bundled_data(image_venv: Path) -> None:
    result = run_in(image_venv, "events")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^message_received\s+message_received\s", result.stdout, re.MULTILINE)
    where = subprocess.run(
        [
            str(image_venv / "bin" / "python"),
            "-c",
            "import json, pipeline.config as c; "
            "print(json.dumps({n: str(c.bundled_dir(n)) for n in "
            "('schemas', 'topics', 'webhooks', 'knowledge')}))",
        ],
        capture_output=True,
        text=True,
        cwd=image_venv.parent,
        env=clean_env(),
        check=True,
    )
    for name, folder in json.loads(where.stdout).items():
        assert folder.startswith(str(image_venv)), (name, folder)  # from the wheel
        assert any(Path(folder).iterdir()), name


def test_pipeline_run_echo_help(image_venv: Path) -> None:
    result = run_in(image_venv, "run", "echo", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: pipeline run [OPTIONS] SERVICE" in result.stdout


def test_the_image_leaves_out_the_demo_and_says_which_extra_it_needs(image_venv: Path) -> None:
    result = run_in(image_venv, "demo")
    assert result.returncode == 1, result.stdout
    assert "pipeline demo needs the dev extra (aiosmtpd is missing)" in result.stderr
    assert "kafka-agent-pipeline[dev]" in result.stderr


def test_a_dockerfile_missing_a_force_included_folder_fails_the_check(tmp_path: Path) -> None:
    """The check catches the image that once failed: deploy/ data not copied."""
    broken = "\n".join(
        line for line in DOCKERFILE.splitlines() if not line.startswith("COPY deploy/")
    )
    assert broken != DOCKERFILE
    source = assemble(REPO, install_stage(broken), tmp_path / "root")
    built = build_wheel(source, tmp_path / "wheels")
    assert built.returncode != 0
    assert "Forced include not found" in built.stdout + built.stderr


def test_a_copy_of_an_ignored_path_fails_the_check(tmp_path: Path) -> None:
    assert "tests/conftest.py" not in context_files(REPO)  # .dockerignore keeps tests out
    broken = DOCKERFILE.replace("COPY topics ./topics", "COPY topics ./topics\nCOPY tests ./tests")
    with pytest.raises(FileNotFoundError, match="COPY tests: not in the build context"):
        assemble(REPO, install_stage(broken), tmp_path / "root")


def test_the_context_holds_only_what_the_image_needs() -> None:
    tops = {path.split("/")[0] for path in context_files(REPO)}
    assert tops == {
        ".dockerignore",
        "Dockerfile",
        "README.md",
        "pyproject.toml",
        "pipeline",
        "schemas",
        "topics",
        "deploy",
    }
    assert not [p for p in context_files(REPO) if "__pycache__" in p or p.endswith(".pyc")]


# --------------------------------------------------------------------------- static


def test_multi_stage_on_a_slim_python() -> None:
    assert len(stages()) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, re.MULTILINE)
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages())


def test_final_stage_copies_only_the_venv_and_runs_as_non_root() -> None:
    final = stages()[-1]
    assert "COPY --from=build /opt/pipeline /opt/pipeline" in final
    assert not re.search(r"\b(gcc|build-essential|apt-get install|pip install)\b", final)
    (user,) = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes can check runAsNonRoot
    values = REPO / "helm" / "pipeline" / "values.yaml"
    assert f"runAsUser: {uid}" in values.read_text()


def test_one_image_for_every_service() -> None:
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["pipeline"]
