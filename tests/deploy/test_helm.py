"""The Helm chart, checked by the real helm and against the Kubernetes and CRD schemas."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.egress import blocked_reason
from tests.deploy.deploy_support import ALL_ON_VALUES, CHART, RULES, SERVICES, render, run
from tests.deploy.manifests import (
    CUSTOM_RESOURCES,
    containers,
    crd_schema,
    of_kind,
    validate_manifest,
)


@pytest.mark.parametrize("values", [None, ALL_ON_VALUES], ids=["defaults", "all-on"])
def test_lint_strict(helm: str, values: Path | None) -> None:
    args = ["--values", str(values)] if values else []
    result = run(helm, "lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("manifests_fixture", ["default_manifests", "all_on_manifests"])
def test_manifests_valid_against_kubernetes_and_crd_schemas(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[dict[str, Any]] = request.getfixturevalue(manifests_fixture)
    assert manifests
    for manifest in manifests:
        validate_manifest(manifest)


def test_all_on_renders_every_optional_part(all_on_manifests: list[dict[str, Any]]) -> None:
    kinds = {m["kind"] for m in all_on_manifests}
    assert kinds >= {
        "Deployment", "Service", "Ingress", "ServiceAccount", "ConfigMap", "Job",
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor",
        "PrometheusRule", "Pod", "NetworkPolicy",
    }  # fmt: skip
    deployments = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]
        for m in of_kind(all_on_manifests, "Deployment")
    }
    assert deployments == set(SERVICES)


def test_defaults_deploy_every_service_but_echo(default_manifests: list[dict[str, Any]]) -> None:
    components = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]
        for m in of_kind(default_manifests, "Deployment")
    }
    assert components == set(SERVICES) - {"echo"}
    kinds = {m["kind"] for m in default_manifests}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ScaledObject", "Ingress"}


def test_crd_schemas_reject_what_the_operators_would(
    all_on_manifests: list[dict[str, Any]],
) -> None:
    """The vendored schemas are strict: a misspelt field fails, as it would on apply."""
    for (api_version, kind), file in CUSTOM_RESOURCES.items():
        manifest = next(m for m in all_on_manifests if m["kind"] == kind)
        assert manifest["apiVersion"] == api_version
        broken = json.loads(json.dumps(manifest))
        broken["spec"]["notAField"] = True
        schema = crd_schema(file)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(schema).validate(broken)


def test_values_schema_rejects_unknown_keys(helm: str) -> None:
    result = run(
        helm, "template", "x", str(CHART), "--set", "services.agent.replicas=3", check=False
    )
    assert result.returncode != 0
    assert "replicas" in result.stderr
    schema = json.loads((CHART / "values.schema.json").read_text())

    def objects(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                yield node
            for child in node.values():
                yield from objects(child)

    for node in objects(schema):
        assert node.get("additionalProperties") is False, sorted(node["properties"])


def test_deployments_are_hardened_and_probed(all_on_manifests: list[dict[str, Any]]) -> None:
    for manifest in of_kind(all_on_manifests, "Deployment") + of_kind(all_on_manifests, "Job"):
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(manifest):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            env = {e["name"]: e for e in container["env"]}
            assert env["PIPELINE_BOOTSTRAP_SERVERS"]["value"]
            assert env["PIPELINE_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "kafka-credentials",
                "key": "password",
            }
            assert env["PIPELINE_KAFKA__SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
            if manifest["kind"] == "Deployment":
                component = manifest["metadata"]["labels"]["app.kubernetes.io/component"]
                assert container["args"] == ["run", component]
                assert env["PIPELINE_SERVICE_NAME"]["value"] == component
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_topics_job_is_a_hook_applying_the_repository_topics(
    all_on_manifests: list[dict[str, Any]],
) -> None:
    (job,) = of_kind(all_on_manifests, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = containers(job)
    assert container["args"] == ["topics", "apply"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PIPELINE_TOPIC_REPLICATION_FACTOR"] == "3"
    assert env["PIPELINE_TOPIC_PREFIX"] == "prod."
    topics_cm = next(
        m
        for m in of_kind(all_on_manifests, "ConfigMap")
        if m["metadata"]["name"].endswith("-topics")
    )
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["topics"]["configMap"]["name"] == topics_cm["metadata"]["name"]
    repo_topics = {
        p.name: yaml.safe_load(p.read_text()) for p in (CHART / "files" / "topics").glob("*.yaml")
    }
    assert repo_topics, "the chart ships no topic definitions"
    shipped = {name: yaml.safe_load(text) for name, text in topics_cm["data"].items()}
    assert {k: shipped[k] for k in repo_topics} == repo_topics
    assert "audit_log.yaml" in shipped


def test_names_fit_in_63_characters(helm: str) -> None:
    release = "r" * 53  # the longest release name helm accepts
    manifests = render(
        helm,
        "--values",
        str(ALL_ON_VALUES),
        "--set",
        "nameOverride=event-pipeline",
        release=release,
    )
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        assert len(name) <= 63, name
        assert not name.endswith("-"), name
        for value in manifest["metadata"]["labels"].values():
            assert len(value) <= 63, value
    suffixes = {
        m["metadata"]["name"].rsplit("-", 1)[-1] for m in manifests if m["kind"] == "Deployment"
    }
    assert suffixes == set(SERVICES)


def test_labels_and_selectors(all_on_manifests: list[dict[str, Any]]) -> None:
    for manifest in all_on_manifests:
        labels = manifest["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, (manifest["kind"], key)
    services = {m["metadata"]["name"]: m for m in of_kind(all_on_manifests, "Service")}
    for deployment in of_kind(all_on_manifests, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert services[deployment["metadata"]["name"]]["spec"]["selector"] == selector


def test_gateway_is_exposed_and_scaled_on_cpu(all_on_manifests: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(all_on_manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    gateway = next(
        m for m in of_kind(all_on_manifests, "Service") if m["metadata"]["name"] == backend["name"]
    )
    assert {p["name"] for p in gateway["spec"]["ports"]} == {"http", "metrics"}
    (hpa,) = of_kind(all_on_manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == backend["name"]
    scaled = {
        m["spec"]["scaleTargetRef"]["name"] for m in of_kind(all_on_manifests, "ScaledObject")
    }
    assert backend["name"] not in scaled
    agent = next(
        m
        for m in of_kind(all_on_manifests, "ScaledObject")
        if m["metadata"]["name"].endswith("-agent")
    )
    triggers = agent["spec"]["triggers"]
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"prod.agent"}
    assert {t["metadata"]["topic"] for t in triggers} == {
        "prod.message_received", "prod.tool_result", "prod.timer_fired", "prod.context_updated"
    }  # fmt: skip


def test_monitoring_resources_ship_the_repository_rules_and_dashboard(
    all_on_manifests: list[dict[str, Any]],
) -> None:
    (rule,) = of_kind(all_on_manifests, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (monitor,) = of_kind(all_on_manifests, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"service", "job"}
    dashboard = next(
        m for m in of_kind(all_on_manifests, "ConfigMap") if "pipeline.json" in m["data"]
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["pipeline.json"])
    assert shipped == json.loads((CHART / "files" / "pipeline-dashboard.json").read_text())


def test_helm_test_hook_checks_every_service(all_on_manifests: list[dict[str, Any]]) -> None:
    (pod,) = of_kind(all_on_manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = " ".join(pod["spec"]["containers"][0]["args"])
    for service in SERVICES:
        assert f"-{service}:8000/readyz" in args


# --------------------------------------------------------------------------- network policies


def policies_by_component(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in of_kind(manifests, "NetworkPolicy")
    }


@pytest.mark.parametrize("manifests_fixture", ["default_manifests", "all_on_manifests"])
def test_every_service_has_an_ingress_policy_and_delivery_an_egress_policy(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[dict[str, Any]] = request.getfixturevalue(manifests_fixture)
    policies = policies_by_component(manifests)
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in of_kind(manifests, "Deployment")
    }
    assert set(policies) == set(deployments)
    for component, policy in policies.items():
        spec = policy["spec"]
        pod_labels = deployments[component]["spec"]["template"]["metadata"]["labels"]
        assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
        wanted_types = ["Ingress", "Egress"] if component == "delivery" else ["Ingress"]
        assert spec["policyTypes"] == wanted_types
        ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
        # The console's pages only for the peers networkPolicy.consoleFrom names (all-on).
        console_open = manifests_fixture == "all_on_manifests"
        http = component == "gateway" or (component == "console" and console_open)
        assert ports == ({"metrics", "http"} if http else {"metrics"})
        named = {p["name"] for c in containers(deployments[component]) for p in c["ports"]}
        assert ports <= named


def delivery_public_blocks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer and peer["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0")
    ]


@pytest.mark.parametrize(
    ("address", "reachable"),
    [
        ("169.254.169.254", False),
        ("10.0.0.5", False),
        ("172.20.1.1", False),
        ("192.168.1.10", False),
        ("127.0.0.1", False),
        ("100.100.100.200", False),
        ("fd00:ec2::254", False),
        ("fe80::1", False),
        ("::1", False),
        ("::ffff:10.0.0.1", False),
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_delivery_egress_reaches_public_addresses_only(
    default_manifests: list[dict[str, Any]], address: str, reachable: bool
) -> None:
    ip = ipaddress.ip_address(address)
    policy = policies_by_component(default_manifests)["delivery"]
    allowed = any(
        ip.version == ipaddress.ip_network(block["cidr"]).version
        and ip in ipaddress.ip_network(block["cidr"])
        and not any(ip in ipaddress.ip_network(e) for e in block["except"])
        for block in delivery_public_blocks(policy)
    )
    assert allowed == reachable
    # The chart's ranges and the delivery service's own check agree.
    assert (blocked_reason(ip) is None) == reachable


def test_delivery_egress_allows_dns_and_the_kafka_ports(
    default_manifests: list[dict[str, Any]], all_on_manifests: list[dict[str, Any]]
) -> None:
    def rule_ports(policy: dict[str, Any]) -> list[set[tuple[int, str]]]:
        return [
            {(p["port"], p["protocol"]) for p in rule.get("ports", [])}
            for rule in policy["spec"]["egress"]
        ]

    default = policies_by_component(default_manifests)["delivery"]
    assert {(53, "UDP"), (53, "TCP")} in rule_ports(default)
    assert {(9092, "TCP")} in rule_ports(default)  # from kafka.bootstrapServers
    all_on = policies_by_component(all_on_manifests)["delivery"]
    assert {(9093, "TCP")} in rule_ports(all_on)  # three brokers, one port
    kafka_rule = next(
        r for r in all_on["spec"]["egress"] if r.get("ports") == [{"port": 9093, "protocol": "TCP"}]
    )
    assert kafka_rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}
    ]
    assert all_on["spec"]["egress"][-1] == {
        "to": [{"ipBlock": {"cidr": "10.20.0.25/32"}}],
        "ports": [{"port": 587, "protocol": "TCP"}],
    }
    # Metrics restricted to the monitoring namespace, and the helm test Pod still gets in.
    (test_pod,) = of_kind(all_on_manifests, "Pod")
    for policy in policies_by_component(all_on_manifests).values():
        metrics_rule = next(
            r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "metrics"
        )
        selectors = [
            p["podSelector"]["matchLabels"] for p in metrics_rule["from"] if "podSelector" in p
        ]
        assert any(s.items() <= test_pod["metadata"]["labels"].items() for s in selectors)
    gateway = policies_by_component(all_on_manifests)["gateway"]
    http_rule = next(r for r in gateway["spec"]["ingress"] if r["ports"][0]["port"] == "http")
    assert http_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_network_policies_can_be_switched_off(helm: str) -> None:
    manifests = render(helm, "--set", "networkPolicy.enabled=false")
    assert of_kind(manifests, "NetworkPolicy") == []
    assert of_kind(manifests, "Deployment")
    result = run(
        helm, "template", "x", str(CHART), "--set", "networkPolicy.egress=true", check=False
    )
    assert result.returncode != 0
    assert "egress" in result.stderr
