"""docker-compose.yml: valid Compose (checked by compose-go, Docker Compose's own loader,
against the Compose Specification schema) and consistent with the code."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import COMPOSE, REPO, SERVICES, find_tool, run


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    """The project as Docker Compose resolves it (every profile on)."""
    out = run(find_tool("compose-check"), str(COMPOSE), cwd=REPO).stdout
    resolved: dict[str, Any] = json.loads(out)
    return resolved


def test_compose_check_rejects_what_docker_compose_would(tmp_path: Any) -> None:
    broken = COMPOSE.read_text().replace("cap_drop:", "cap_dropped:", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    for folder in ("topics", "deploy"):
        (tmp_path / folder).symlink_to(REPO / folder)
    result = run(find_tool("compose-check"), str(tmp_path / "docker-compose.yml"), check=False)
    assert result.returncode != 0
    assert "cap_dropped" in result.stderr


def test_every_service_of_the_code_runs_from_the_one_image(project: dict[str, Any]) -> None:
    services = project["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["run", name]
        assert service["build"]["context"] == str(REPO)
        assert service["environment"]["PIPELINE_SERVICE_NAME"] == name
        assert service["environment"]["PIPELINE_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "healthcheck" in service and "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert {s["image"] for n, s in services.items() if n in SERVICES or n == "topics"} == {
        "kafka-agent-pipeline:dev"
    }


def test_built_in_services_are_all_in_compose(project: dict[str, Any]) -> None:
    from pipeline.services import BUILT_IN

    assert set(BUILT_IN) <= set(SERVICES)
    assert set(SERVICES) <= set(project["services"])


def test_topic_job_applies_the_repository_topics(project: dict[str, Any]) -> None:
    job = project["services"]["topics"]
    assert job["command"] == ["topics", "apply"]
    assert job["restart"] == "no"
    mounts = {v["target"]: v for v in job["volumes"]}
    target = job["environment"]["PIPELINE_TOPICS_DIR"]
    assert mounts[target]["source"] == str(REPO / "topics")
    assert job["environment"]["PIPELINE_TOPIC_REPLICATION_FACTOR"] == "1"
    assert list((REPO / "topics").glob("*.yaml"))


def test_kafka_is_apache_kraft_with_a_health_check(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_keeps_its_data_on_the_volume(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    (data,) = [v for v in kafka["volumes"] if v["type"] == "volume"]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == data["target"]


def test_prometheus_loads_the_rules_and_scrapes_every_service(project: dict[str, Any]) -> None:
    prometheus = project["services"]["prometheus"]
    mounts = {v["target"]: v["source"] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/rules"] == str(REPO / "deploy" / "prometheus" / "rules")
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "pipeline"]
    assert job["honor_labels"] is True
    assert set(job["dns_sd_configs"][0]["names"]) == set(SERVICES)
    grafana = project["services"]["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_compose_publishes_nothing_on_all_interfaces_except_the_gateway(
    project: dict[str, Any],
) -> None:
    published = {
        name: service["ports"]
        for name, service in project["services"].items()
        if "ports" in service
    }
    assert {"gateway", "kafka", "prometheus", "grafana"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            if name == "gateway":
                assert port.get("host_ip") in (None, "0.0.0.0"), port
            else:
                assert port.get("host_ip") == "127.0.0.1", (name, port)
    assert [p["published"] for p in published["gateway"]] == ["8080"]


def test_grafana_needs_a_login(project: dict[str, Any]) -> None:
    env = project["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # The password comes from the environment; the documented default is for local use.
    raw = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["environment"]
    assert raw["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-change-me-locally}"
    assert env["GF_SECURITY_ADMIN_PASSWORD"]
