"""The chart deploys your own agent: the example in examples/own_agent with its values file.

Its own service gets a Deployment from its image, the topics Job and every service see its
schema and topic (checked by loading the topology as the Job's container would, from the
rendered ConfigMaps at their mount paths), the console gets its Ingress, and a topic whose
schema the Job cannot see fails the render.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import bundled_dir
from pipeline.topology import load_topology
from tests.deploy.deploy_support import CHART, REPO, render, run
from tests.deploy.manifests import containers, of_kind, validate_manifest

EXAMPLE = REPO / "examples" / "own_agent"
EXAMPLE_VALUES = EXAMPLE / "deploy" / "values.yaml"


@pytest.fixture(scope="module")
def shop_manifests(helm: str) -> list[dict[str, Any]]:
    return render(helm, "--values", str(EXAMPLE_VALUES), release="shop")


def component(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        m
        for m in of_kind(manifests, kind)
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def container_view(
    manifests: list[dict[str, Any]], workload: dict[str, Any], root: Path
) -> dict[str, Path]:
    """The workload's ConfigMap volumes written under ``root`` at their mount paths; the
    container's topic and schema folders (PIPELINE_*_DIRS) as paths under ``root``."""
    config_maps = {m["metadata"]["name"]: m for m in of_kind(manifests, "ConfigMap")}
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = containers(workload)
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        for file, text in config_maps[source["name"]]["data"].items():
            (folder / file).write_text(text)
    env = env_of(container)
    extra_schemas = [p for p in env.get("PIPELINE_EXTRA_SCHEMA_DIRS", "").split(":") if p]
    return {
        "topics": root / env["PIPELINE_TOPICS_DIR"].lstrip("/"),
        **{f"schemas{i}": root / p.lstrip("/") for i, p in enumerate(extra_schemas)},
    }


def topology_seen_by(
    manifests: list[dict[str, Any]], workload: dict[str, Any], root: Path
) -> set[str]:
    """Topic names the workload's container loads, schemas checked as at its start."""
    view = container_view(manifests, workload, root)
    extra_schemas = [path for key, path in view.items() if key.startswith("schemas")]
    topology = load_topology(
        view["topics"], schemas_dir=bundled_dir("schemas"), extra_schema_dirs=extra_schemas
    )
    return {topic.name for topic in topology}


def test_the_example_renders_valid_manifests(shop_manifests: list[dict[str, Any]]) -> None:
    kinds = {m["kind"] for m in shop_manifests}
    assert kinds >= {"Deployment", "Job", "Ingress", "ScaledObject", "NetworkPolicy"}
    for manifest in shop_manifests:
        validate_manifest(manifest)


def test_lint_strict_with_the_example_values(helm: str) -> None:
    result = run(helm, "lint", "--strict", str(CHART), "--values", str(EXAMPLE_VALUES))
    assert "0 chart(s) failed" in result.stdout


def test_the_own_service_runs_from_its_image(shop_manifests: list[dict[str, Any]]) -> None:
    shop = component(shop_manifests, "Deployment", "shop")
    assert shop["spec"].get("replicas") is None  # KEDA sizes it
    (container,) = containers(shop)
    assert container["image"] == "registry.example.com/acme/own-agent:0.1.0"
    assert container["args"] == ["run", "own_agent.shop:service"]
    env = env_of(container)
    assert env["PIPELINE_SERVICE_NAME"] == "shop"
    assert env["PIPELINE_EXTRA_SCHEMA_DIRS"] == "/etc/pipeline/extra-schemas"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    scaled = component(shop_manifests, "ScaledObject", "shop")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "shop"
    assert trigger["metadata"]["topic"] == "order_placed"
    tools = env_of(containers(component(shop_manifests, "Deployment", "tools"))[0])
    assert tools["PIPELINE_TOOLS__PLUGINS"] == '["order_status"]'


def test_the_values_carry_the_examples_own_schema_and_topic(
    shop_manifests: list[dict[str, Any]],
) -> None:
    values = yaml.safe_load(EXAMPLE_VALUES.read_text())
    schema = EXAMPLE / "schemas" / "acme.shop.OrderPlaced.avsc"
    topic = EXAMPLE / "topics" / "order_placed.yaml"
    assert values["schemas"]["extraFiles"] == {schema.name: schema.read_text()}
    assert values["topics"]["extraDefinitions"] == {topic.name: topic.read_text()}


def test_the_job_and_every_service_see_the_own_topic_and_its_schema(
    shop_manifests: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (job,) = of_kind(shop_manifests, "Job")
    assert containers(job)[0]["args"] == ["topics", "apply"]
    seen_by_job = topology_seen_by(shop_manifests, job, tmp_path / "job")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    shop_service = importlib.import_module("own_agent.shop").service
    handled = {spec.event_type for spec in shop_service.handlers}
    assert handled == {"order_placed"}
    assert handled <= seen_by_job
    for deployment in of_kind(shop_manifests, "Deployment"):
        name = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert topology_seen_by(shop_manifests, deployment, tmp_path / name) == seen_by_job


def test_a_topic_whose_schema_the_job_cannot_see_fails_the_render(helm: str) -> None:
    topic = (
        f"topics.extraDefinitions.order_placed\\.yaml={EXAMPLE / 'topics' / 'order_placed.yaml'}"
    )
    schema = (
        "schemas.extraFiles.acme\\.shop\\.OrderPlaced\\.avsc="
        f"{EXAMPLE / 'schemas' / 'acme.shop.OrderPlaced.avsc'}"
    )
    result = run(helm, "template", "x", str(CHART), "--set-file", topic, check=False)
    assert result.returncode != 0
    assert "value_schema acme.shop.OrderPlaced is in no schema" in result.stderr
    assert "schemas.extraFiles" in result.stderr
    assert render(helm, "--set-file", topic, "--set-file", schema)
    in_image = render(
        helm, "--set-file", topic, "--set", "schemas.extraDirs={/app/schemas}", "--set",
        "topics.extraDirs={/app/topics}",
    )  # fmt: skip
    (job,) = of_kind(in_image, "Job")
    env = env_of(containers(job)[0])
    assert env["PIPELINE_EXTRA_SCHEMA_DIRS"] == "/app/schemas"
    assert env["PIPELINE_EXTRA_TOPIC_DIRS"] == "/app/topics"


def test_an_own_service_needs_run_or_command(helm: str) -> None:
    result = run(
        helm, "template", "x", str(CHART), "--set", "services.feedback.replicaCount=2",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "services.feedback is not a built-in service" in result.stderr
    manifests = render(
        helm, "--set", "services.feedback.command={python,-m,acme.feedback}",
        "--set", "services.feedback.image.repository=acme/support",
        "--set", "services.feedback.image.tag=1.4.0",
    )  # fmt: skip
    (container,) = containers(component(manifests, "Deployment", "feedback"))
    assert container["command"] == ["python", "-m", "acme.feedback"]
    assert "args" not in container
    assert container["image"] == "acme/support:1.4.0"


def test_the_console_ingress_and_policy_admit_only_consolefrom(
    shop_manifests: list[dict[str, Any]], default_manifests: list[dict[str, Any]]
) -> None:
    ingress = component(shop_manifests, "Ingress", "console")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "shop-pipeline-console", "port": {"name": "http"}}
    assert ingress["spec"]["rules"][0]["host"] == "console.shop.example.com"
    policy = component(shop_manifests, "NetworkPolicy", "console")
    (http_rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "http"]
    assert http_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    default_policy = component(default_manifests, "NetworkPolicy", "console")
    assert [r["ports"][0]["port"] for r in default_policy["spec"]["ingress"]] == ["metrics"]
    assert not [
        m for m in of_kind(default_manifests, "Ingress") if "console" in m["metadata"]["name"]
    ]


def notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it, rendered through a copy of the chart."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=False)
    (chart / "templates" / "notes-render.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "pipeline.notes" . | quote }}\n'
    )
    out = run(
        helm, "template", "shop", str(chart), "--namespace", "shop",
        "--show-only", "templates/notes-render.yaml", *args,
    ).stdout  # fmt: skip
    text: str = yaml.safe_load(out)["data"]["notes"]
    return text


def test_notes_say_how_to_sign_in_to_the_console(helm: str, tmp_path: Path) -> None:
    default = notes(helm, tmp_path / "default")
    assert "nobody can sign in" in default
    assert "pipeline console hash-password" in default
    assert "--set console.existingSecret=shop-pipeline-console-operators" in default
    assert "port-forward service/shop-pipeline-console" in default
    shop = notes(helm, tmp_path / "shop", "--values", str(EXAMPLE_VALUES))
    assert "https://console.shop.example.com" in shop
    assert "Secret shop-console" in shop
    assert "nobody can sign in" not in shop
    closed = notes(helm, tmp_path / "closed", "--set", "console.ingress.enabled=true")
    assert "networkPolicy.consoleFrom is empty" in closed
