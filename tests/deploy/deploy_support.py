"""Paths and helpers shared by the deployment checks: where the tools are, how to run them.

Tools are found in ``.ci/deploy-tools``' cache (``$PIPELINE_TOOLS_DIR/bin``, default
``${XDG_CACHE_HOME:-~/.cache}/pipeline-tools/bin``) or on PATH. A missing tool skips its
tests on a developer's machine and fails them in CI (``tests/environment.py``): nothing
is skipped in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.environment import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "pipeline"
ALL_ON_VALUES = CHART / "ci" / "all-on-values.yaml"
SCHEMAS = REPO / "deploy" / "schemas"
RULES = REPO / "deploy" / "prometheus" / "rules" / "pipeline-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "tests" / "pipeline-alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "pipeline.json"
COMPOSE = REPO / "docker-compose.yml"

# Every service `pipeline run` is meant to know; compose and the chart carry each one.
SERVICES = ("gateway", "agent", "tools", "delivery", "scheduler", "webhooks", "console", "echo")


def tools_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeline-tools"
    return Path(os.environ.get("PIPELINE_TOOLS_DIR") or default) / "bin"


def find_tool(name: str) -> str:
    cached = tools_dir() / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    on_path = shutil.which(name)
    if on_path is None:
        skip_or_fail(f"{name} is not installed: .ci/deploy-tools installs it")
    return str(on_path)


def run(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure the assertion shows its output."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def render(helm: str, *args: str, release: str = "pipeline") -> list[dict[str, Any]]:
    """`helm template` the chart; the manifests as dicts."""
    out = run(helm, "template", release, str(CHART), "--namespace", "agents", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


# Names in PromQL that are functions, keywords or label names rather than metrics.
_METRIC = re.compile(r"\b(pipeline_[a-z0-9_]+|up)\b(?!\s*[=!~(])")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def metric_names(exprs: list[str]) -> set[str]:
    """Series names used by PromQL expressions (``pipeline_*`` and ``up``)."""
    names: set[str] = set()
    for expr in exprs:
        names.update(match.group(1) for match in _METRIC.finditer(expr))
    return names
