"""Alert rules and the compose Prometheus config, checked by promtool."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.deploy_support import (
    REPO,
    RULE_TESTS,
    RULES,
    dashboard_exprs,
    metric_names,
    rule_exprs,
    run,
)


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


# What the code exports, as series names: the runtime (pipeline/observability/metrics.py)
# and the services' own metrics. test_prometheus_scrape.py checks them on running services.
EXPORTED = {
    "up",
    "pipeline_events_consumed_total",
    "pipeline_events_produced_total",
    "pipeline_events_handled_total",
    "pipeline_handler_errors_total",
    "pipeline_dead_letters_total",
    "pipeline_handler_duration_seconds_bucket",
    "pipeline_handler_duration_seconds_sum",
    "pipeline_handler_duration_seconds_count",
    "pipeline_event_latency_seconds_bucket",
    "pipeline_event_latency_seconds_sum",
    "pipeline_event_latency_seconds_count",
    "pipeline_events_in_flight",
    "pipeline_consumer_lag",
    "pipeline_partitions_paused",
    "pipeline_partitions_held",
    "pipeline_kafka_call_blocked_seconds",
    "pipeline_poll_loop_stalled_seconds",
    "pipeline_offset_commits_total",
    "pipeline_rebalances_total",
    # agent (pipeline/llm/metrics.py)
    "pipeline_llm_tokens_total",
    "pipeline_llm_requests_total",
    *_histogram("pipeline_llm_request_duration_seconds"),
    # agent: handoffs and approvals (pipeline/services/agent/metrics.py)
    "pipeline_handoffs_total",
    "pipeline_handoffs_open",
    *_histogram("pipeline_handoff_first_reply_seconds"),
    "pipeline_approvals_pending",
    "pipeline_approvals_total",
    # agent: human cleanup per tenant and agent version (pipeline/services/agent/cleanup.py)
    "pipeline_cleanup_conversations_total",
    "pipeline_cleanup_turns_total",
    "pipeline_cleanup_handoffs_total",
    "pipeline_cleanup_first_answers_total",
    "pipeline_cleanup_first_answers_reopened_total",
    "pipeline_cleanup_approvals_total",
    "pipeline_cleanup_operator_replies_total",
    "pipeline_cleanup_dead_letters_total",
    # tools (pipeline/services/tools.py)
    "pipeline_tool_calls_total",
    *_histogram("pipeline_tool_duration_seconds"),
    # delivery (pipeline/services/delivery/metrics.py)
    "pipeline_deliveries_total",
    *_histogram("pipeline_delivery_duration_seconds"),
    *_histogram("pipeline_turn_latency_seconds"),
    # scheduler (pipeline/services/scheduler/service.py)
    "pipeline_timers_fired_total",
    "pipeline_timers_pending",
    *_histogram("pipeline_timer_fire_delay_seconds"),
    # console (pipeline/services/console/metrics.py)
    "pipeline_console_operator_actions_total",
    "pipeline_console_signins_total",
    "pipeline_console_refused_requests_total",
    "pipeline_console_stream_clients",
    "pipeline_console_skipped_records_total",
    # gateway (pipeline/services/gateway/metrics.py)
    "pipeline_gateway_requests_total",
    "pipeline_gateway_streams_open",
    "pipeline_gateway_streamed_messages_total",
    *_histogram("pipeline_gateway_request_duration_seconds"),
}


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == tested


def test_every_alert_has_severity_summary_and_description() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    used = metric_names(rule_exprs() + dashboard_exprs())
    assert used, "no metric names found"
    assert used <= EXPORTED, sorted(used - EXPORTED)


def test_compose_prometheus_config(promtool: str, tmp_path: Path) -> None:
    """The config docker-compose mounts, with the rule path as mounted in the container."""
    config = (REPO / "deploy" / "prometheus" / "prometheus.yml").read_text()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(RULES.read_text())
    local = config.replace("/etc/prometheus/rules/", f"{tmp_path}/rules/")
    assert local != config
    (tmp_path / "prometheus.yml").write_text(local)
    result = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert "1 rule files found" in result.stdout
