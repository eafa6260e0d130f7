"""The Grafana dashboard: a templated datasource, $__rate_interval, sound panels."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.deploy_support import DASHBOARD, REPO, dashboard_exprs


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def test_datasource_is_a_template_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_range_functions_use_rate_interval() -> None:
    for expr in dashboard_exprs():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    panels = load()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_covers_the_issue_list() -> None:
    titles = " ".join(p["title"].lower() for p in load()["panels"])
    for word in (
        "handled",
        "lag",
        "latency",
        "handler duration",
        "errors",
        "dead letters",
        "in flight",
        "end-to-end turn latency",
        "llm tokens",
        "llm request latency",
        "tool latency",
        "tool errors",
        "deliveries / s by state",
        "gateway requests",
        "open handoffs",
        "first operator reply",
        "pending approvals",
        "approvals / s by decision",
    ):
        assert word in titles, word


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    provider = (
        REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "pipeline.yml"
    ).read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose


def test_human_cleanup_is_a_row_comparing_tenants_and_agent_versions() -> None:
    panels = load()["panels"]
    [row] = [p for p in panels if p["title"] == "Human cleanup by tenant and agent version"]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
    titles = " ".join(p["title"].lower() for p in below)
    for word in (
        "handoff rate",
        "first-answer-resolved",
        "approvals",
        "operator replies per conversation",
        "dead letters per 1,000 turns",
    ):
        assert word in titles, word
    for panel in below:
        for target in panel["targets"]:
            assert "pipeline_cleanup_" in target["expr"], panel["title"]
            assert "agent_version" in target["expr"], panel["title"]
            assert "{{agent_version}}" in target["legendFormat"], panel["title"]
