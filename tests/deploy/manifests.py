"""Rendered manifests: picking them apart, and validating them against the Kubernetes
schemas (kubernetes-validate) and the vendored CRD schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate

from tests.deploy.deploy_support import SCHEMAS

# The oldest Kubernetes the chart is validated for, and the newest schemas available.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
}


def crd_schema(file: str) -> dict[str, Any]:
    """A vendored CRD schema, made strict as the API server's strict field validation is:
    an object with declared properties accepts no other field."""

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node

    schema: dict[str, Any] = strict(json.loads((SCHEMAS / file).read_text()))
    # The meta-schema without its `regex` format check: patterns are Go RE2, as `(?i)`.
    no_formats = jsonschema.FormatChecker(formats=())
    meta = jsonschema.Draft7Validator(
        jsonschema.Draft7Validator.META_SCHEMA, format_checker=no_formats
    )
    meta.validate(schema)
    return schema


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec
    return list(pod["containers"])


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Validate one manifest strictly: a CRD's against its vendored schema, any other
    against the Kubernetes schemas of the oldest and newest versions the chart supports."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CUSTOM_RESOURCES:
        jsonschema.Draft7Validator(crd_schema(CUSTOM_RESOURCES[key])).validate(manifest)
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
