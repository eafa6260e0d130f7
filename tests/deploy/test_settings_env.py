"""Every ``PIPELINE_*`` variable that docker-compose.yml and the Helm chart set is a real
setting of :class:`pipeline.config.Settings`.

Settings ignore unknown variables (``extra="ignore"``), so a misspelt name such as
``PIPELINE_GATEWAY_PORT`` (for ``PIPELINE_GATEWAY__PORT``) is silently dropped at run time.
The names are checked against the pydantic models themselves: a top-level field, a
``SECTION__FIELD`` of a nested section model, or a key of a passthrough dict
(``KAFKA__*``, ``CONSUMER__*``, ``PRODUCER__*``). Then every container's environment must
build a ``Settings``, and every path setting must point into a mounted volume.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from pipeline.config import Settings
from pipeline.config.env_names import TOOL_VARIABLES, resolve, unwrap
from tests.deploy.deploy_support import CHART, COMPOSE, REPO

PREFIX = "PIPELINE_"

# PIPELINE_* names that are deliberately not settings, each with the reason.
NOT_SETTINGS = {
    "PIPELINE_IMAGE": (
        "docker-compose.yml interpolation: the image every service runs; read by Docker "
        "Compose on the host, never by the code"
    ),
}

_NAME = re.compile(r"\bPIPELINE_[A-Z0-9]+(?:__?[A-Z0-9]+)*")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def setting(name: str) -> tuple[Any, str]:
    """The annotation of the setting an environment variable sets, and the error if none:
    the same resolution ``load_settings`` refuses unknown variables with."""
    return resolve(name, Settings)


def is_setting(name: str) -> bool:
    return not setting(name)[1]


def is_path(name: str) -> bool:
    annotation, error = setting(name)
    return not error and Path in unwrap(annotation)


# ------------------------------------------------------------------ docker-compose.yml


def compose_environments() -> dict[str, dict[str, str]]:
    """Each compose service's environment, interpolated with the defaults it names."""
    project = yaml.safe_load(COMPOSE.read_text())  # `<<` merge keys resolved
    out: dict[str, dict[str, str]] = {}
    for name, service in project["services"].items():
        raw = service.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.partition("=")[::2] for item in raw)
        out[name] = {
            str(k): _INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in raw.items()
        }
    return out


def compose_mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Container path -> host path of a compose service's bind mounts."""
    mounts: dict[PurePosixPath, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("."):
            mounts[PurePosixPath(target)] = REPO / source
    return mounts


# ------------------------------------------------------------------ helm


def pod_containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict]]:
    """(object, container, pod spec) of every Deployment, Job and Pod."""
    for manifest in manifests:
        spec = manifest.get("spec") or {}
        pod = spec.get("template", {}).get("spec") if "template" in spec else spec
        if manifest["kind"] not in {"Deployment", "Job", "Pod"} or not pod:
            continue
        for container in pod.get("containers", []):
            yield f"{manifest['kind']}/{manifest['metadata']['name']}", container, pod


def helm_environment(container: dict[str, Any]) -> dict[str, str]:
    """A container's env; values from Secrets or the downward API become placeholders."""
    return {e["name"]: str(e.get("value", "from-a-secret")) for e in container.get("env", [])}


@pytest.fixture(scope="module", params=["default_manifests", "all_on_manifests"])
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = request.getfixturevalue(request.param)
    return rendered


# ------------------------------------------------------------------ tests


def test_the_check_knows_right_from_wrong() -> None:
    """Names the chart and compose once used wrongly fail; their fixes pass."""
    for wrong in (
        "PIPELINE_GATEWAY_PORT",
        "PIPELINE_WEBHOOK_RULES",
        "PIPELINE_TOOL_TIMEOUT_SECONDS",
        "PIPELINE_GATEWAY__PORTS",
        "PIPELINE_LOG_LEVEL__X",
        "PIPELINE_KAFKA__",
    ):
        assert not is_setting(wrong), wrong
    for right in (
        "PIPELINE_GATEWAY__PORT",
        "PIPELINE_WEBHOOKS__RULES_FILE",
        "PIPELINE_TOOLS__KNOWLEDGE_FILE",
        "PIPELINE_TOOLS__TIMEOUT_SECONDS",
        "PIPELINE_KAFKA__SASL_PASSWORD",
        "PIPELINE_CONSUMER__FETCH_MAX_BYTES",
        "PIPELINE_PRODUCER__LINGER_MS",
        "PIPELINE_GATEWAY__WEB_TOKENS__ACME",
        "PIPELINE_BOOTSTRAP_SERVERS",
    ):
        assert is_setting(right), setting(right)[1]
    assert is_path("PIPELINE_TOPICS_DIR") and not is_path("PIPELINE_METRICS_PORT")


def compose_names() -> set[str]:
    """PIPELINE_* names compose sets in an environment or interpolates from the host's."""
    used = {name for env in compose_environments().values() for name in env}
    used |= {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE.read_text())}
    return {name for name in used if name.startswith(PREFIX)}


def test_exceptions_are_really_not_settings_and_still_used() -> None:
    assert NOT_SETTINGS.keys() <= TOOL_VARIABLES.keys()  # so `pipeline run` accepts them
    for name in NOT_SETTINGS:
        assert name.startswith(PREFIX) and not is_setting(name), name
    stale = NOT_SETTINGS.keys() - compose_names() - chart_names()
    assert not stale, f"exceptions nothing uses any more: {sorted(stale)}"


def test_compose_sets_only_real_settings() -> None:
    used = compose_names()
    assert "PIPELINE_BOOTSTRAP_SERVERS" in used
    wrong = [setting(n)[1] for n in sorted(used - NOT_SETTINGS.keys()) if not is_setting(n)]
    assert not wrong, "\n".join(wrong)


def test_helm_sets_only_real_settings(manifests: list[dict[str, Any]]) -> None:
    used = {
        e["name"]
        for _, container, _ in pod_containers(manifests)
        for e in container.get("env", [])
        if e["name"].startswith(PREFIX)
    }
    assert "PIPELINE_BOOTSTRAP_SERVERS" in used
    wrong = [setting(n)[1] for n in sorted(used - NOT_SETTINGS.keys()) if not is_setting(n)]
    assert not wrong, "\n".join(wrong)


def chart_names() -> set[str]:
    """PIPELINE_* names anywhere in the chart's values, schema and templates."""
    files = [*CHART.glob("values*.*"), *CHART.glob("ci/*.yaml"), *CHART.rglob("templates/**/*")]
    return {m.group(0) for f in files if f.is_file() for m in _NAME.finditer(f.read_text())}


def test_names_in_comments_and_docs_are_real_settings() -> None:
    """Names mentioned in values.yaml, the schema, templates and compose comments too."""
    files = [COMPOSE, *(REPO / "deploy").rglob("*.y*ml")]
    mentioned = chart_names() | {m.group(0) for f in files for m in _NAME.finditer(f.read_text())}
    wrong = [setting(n)[1] for n in sorted(mentioned - NOT_SETTINGS.keys()) if not is_setting(n)]
    assert not wrong, "\n".join(wrong)


def test_every_compose_environment_builds_settings(
    no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = yaml.safe_load(COMPOSE.read_text())
    for name, env in compose_environments().items():
        if not any(k.startswith(PREFIX) for k in env):
            continue
        _build_settings(monkeypatch, env, f"compose service {name}")
        mounts = compose_mounts(project["services"][name])
        for key, value in env.items():
            if key.startswith(PREFIX) and is_path(key):
                path = PurePosixPath(value)
                inside = [
                    src / path.relative_to(t) for t, src in mounts.items() if path.is_relative_to(t)
                ]
                host = inside[0] if inside else None
                assert host is not None, f"{name}: {key}={value} is not under a mounted folder"
                assert host.exists(), f"{name}: {key}={value} mounts {host}, which is missing"


def test_every_helm_container_builds_settings(
    manifests: list[dict[str, Any]], no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_maps = {
        m["metadata"]["name"]: m.get("data", {}) for m in manifests if m["kind"] == "ConfigMap"
    }
    for where, container, pod in pod_containers(manifests):
        env = helm_environment(container)
        if not any(k.startswith(PREFIX) for k in env):
            continue
        _build_settings(monkeypatch, env, where)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {
            PurePosixPath(m["mountPath"]): volumes[m["name"]]
            for m in container.get("volumeMounts", [])
        }
        for key, value in env.items():
            if not (key.startswith(PREFIX) and is_path(key)):
                continue
            path = PurePosixPath(value)
            target = next((t for t in mounts if path.is_relative_to(t)), None)
            assert target is not None, f"{where}: {key}={value} is not under a volume mount"
            volume = mounts[target]
            if "configMap" in volume and path != target:
                data = config_maps[volume["configMap"]["name"]]
                assert str(path.relative_to(target)) in data, f"{where}: {key}={value}"


def test_knowledge_base_and_webhook_rules_reach_their_services(
    all_on_manifests: list[dict[str, Any]], default_manifests: list[dict[str, Any]]
) -> None:
    def env_of(manifests: list[dict[str, Any]], component: str) -> dict[str, str]:
        for manifest in manifests:
            labels = manifest["metadata"]["labels"]
            if (
                manifest["kind"] == "Deployment"
                and labels["app.kubernetes.io/component"] == component
            ):
                return helm_environment(manifest["spec"]["template"]["spec"]["containers"][0])
        raise AssertionError(component)

    assert "PIPELINE_TOOLS__KNOWLEDGE_FILE" in env_of(all_on_manifests, "tools")
    # No knowledge base in the values: the variable is not set (an empty file would not load).
    assert "PIPELINE_TOOLS__KNOWLEDGE_FILE" not in env_of(default_manifests, "tools")
    for manifests in (all_on_manifests, default_manifests):
        assert "PIPELINE_WEBHOOKS__RULES_FILE" in env_of(manifests, "webhooks")
        assert "PIPELINE_GATEWAY__PORT" in env_of(manifests, "gateway")
    # What the ConfigMaps carry loads as the services load it at start.
    from pipeline.services.webhooks.rules import RuleSet
    from pipeline.toolbox.knowledge import KnowledgeBase

    data = {
        key: text
        for m in all_on_manifests
        if m["kind"] == "ConfigMap"
        for key, text in m.get("data", {}).items()
    }
    assert KnowledgeBase.from_data(yaml.safe_load(data["knowledge.yaml"])).entries
    assert len(RuleSet.parse(data["rules.yaml"])) == 1

    compose = compose_environments()
    assert compose["tools"]["PIPELINE_TOOLS__KNOWLEDGE_FILE"]
    assert compose["webhooks"]["PIPELINE_WEBHOOKS__RULES_FILE"]
    assert compose["gateway"]["PIPELINE_GATEWAY__PORT"] == "8080"


def _build_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], where: str) -> None:
    """Settings from exactly this environment (the test runs with ``no_pipeline_settings``);
    its values must validate."""
    with monkeypatch.context() as patch:
        for key, value in env.items():
            if key.startswith(PREFIX) and key not in NOT_SETTINGS:
                patch.setenv(key, value)
        try:
            Settings()
        except ValueError as exc:  # pydantic's ValidationError, shown with its container
            pytest.fail(f"{where}: its environment does not make Settings: {exc}")
