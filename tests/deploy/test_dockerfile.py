"""The Dockerfile, read statically (no Docker engine here): multi-stage, a venv, no
compilers in the final stage, a numeric non-root user, `pipeline` as the entry point."""

from __future__ import annotations

import json
import re

from deploy_support import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def stages() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


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


def test_build_context_has_what_the_package_needs() -> None:
    build = stages()[0]
    for path in ("pyproject.toml", "README.md", "pipeline", "schemas", "topics"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", build, re.MULTILINE), path
        assert (REPO / path).exists(), path
        assert f"!{path}" in (REPO / ".dockerignore").read_text()
