"""The Prometheus rules, their unit tests and the example configs, checked by the real promtool."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
CONTRACT_METRICS = {
    "sentiwatch_messages_total", "sentiwatch_dead_letters_total", "sentiwatch_late_records_total",
    "sentiwatch_negative_ratio", "sentiwatch_negative_baseline_ratio", "sentiwatch_spike_score",
    "sentiwatch_spike_active", "sentiwatch_inference_seconds", "sentiwatch_batch_size",
    "sentiwatch_end_to_end_seconds", "sentiwatch_model_info",
    # exported by the worker in addition to the contract's
    "sentiwatch_consumer_lag", "sentiwatch_alerts_total",
    # the drift watch (streamer/quality/drift.py)
    "sentiwatch_drift_psi", "sentiwatch_drift_mean_top_probability", "sentiwatch_drift_reference_mean_top_probability",
    "sentiwatch_drift_window_records",
}
REQUIRED_ALERTS = {"NegativeSentimentSpike", "NegativeSentimentRatioHigh", "ScoringStalled", "ConsumerLagHigh",
                   "DeadLettersRising", "SentiwatchWorkersDown"}
# The labels that tell one release from another; every aggregation and join keeps them.
SCOPE = {"cluster", "namespace", "job"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # No skip: make install (scripts/install-system-deps.sh) provides promtool.
    assert shutil.which("promtool"), "promtool missing: run `make install` (Debian package prometheus)"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", "deploy/prometheus/rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass():
    tests = sorted(str(path.relative_to(REPO_ROOT)) for path in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout


def test_prometheus_example_config_is_valid_and_loads_the_rules():
    result = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_complete_and_annotated():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= set(alerts)
    for name, rule in alerts.items():
        assert rule.get("for"), f"{name} has no for: clause"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description", "runbook_url", "dashboard"} <= set(rule["annotations"]), name
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        runbook = (PROMETHEUS_DIR / "RUNBOOK.md").read_text(encoding="utf-8")
        assert f"\n## {anchor}" in runbook.lower(), f"{name}: no runbook section #{anchor}"
    assert "sentiwatch_spike_active" in alerts["NegativeSentimentSpike"]["expr"]


def test_rules_use_only_known_metrics_and_never_average_ratios():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        expr = rule["expr"]
        names = set(re.findall(r"\bsentiwatch_[a-z_]+", expr))
        names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}
        assert names <= CONTRACT_METRICS, f"unknown metric in {rule.get('record') or rule.get('alert')}: {names}"
        assert set(re.findall(r"\bsentiwatch:[a-z_0-9:]+", expr)) <= recorded
        # Ratios are sum / sum: averaging per-worker or per-topic ratios would weigh a trickle like a flood.
        assert "avg" not in expr, rule


def test_every_selector_is_scoped_to_the_release_and_every_aggregation_keeps_the_scope():
    """The chart replaces `job="sentiwatch"` by its release's selector: a selector without it would read every
    release's series, and an aggregation or join without namespace/job would mix staging with production."""
    for rule in rules():
        name = rule.get("record") or rule.get("alert")
        expr = rule["expr"]
        for metric, selector in re.findall(r"\b(sentiwatch_[a-z_]+|sentiwatch:[a-z_0-9:]+|up)\b(\{[^}]*\})?", expr):
            assert 'job="sentiwatch"' in selector, f"{name}: {metric} without job=\"sentiwatch\""
        for clause, labels in re.findall(r"\b(by|on)\s*\(([^)]*)\)", expr):
            if name == "sentiwatch:broker_consumer_lag:sum":
                break  # the broker exporter's labels are not the release's; the rule's `labels` set job
            assert SCOPE <= {label.strip() for label in labels.split(",")}, f"{name}: {clause} ({labels})"
        assert not re.search(r"\b(sum|max|min|count|group)\s*\(", expr), f"{name}: an aggregation without by"
        assert "vector(" not in expr, f"{name}: vector() has no namespace or job"
    broker = next(rule for rule in rules() if rule.get("record") == "sentiwatch:broker_consumer_lag:sum")
    assert broker["labels"] == {"job": "sentiwatch"}  # the exporter's own job is not the release's


def test_alertmanager_example_passes_amtool():
    # No skip: make install (scripts/install-system-deps.sh) provides amtool.
    assert shutil.which("amtool"), "amtool missing: run `make install` (Debian package prometheus-alertmanager)"
    result = subprocess.run(["amtool", "check-config", "deploy/prometheus/alertmanager.yml"], capture_output=True,
                            text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    routed = subprocess.run(["amtool", "config", "routes", "test", "--config.file=deploy/prometheus/alertmanager.yml",
                             "alertname=ScoringStalled", "severity=critical", "namespace=staging"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert routed.stdout.split() == ["sentiwatch-pager,sentiwatch-webhook"], routed.stdout + routed.stderr


def test_alertmanager_example_keeps_releases_apart():
    """One release's alerts never silence or share a notification with another's."""
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    assert SCOPE <= set(config["route"]["group_by"])
    for inhibit in config["inhibit_rules"]:
        assert SCOPE <= set(inhibit.get("equal", [])), inhibit


def test_alertmanager_example_routes_every_alert_to_a_webhook():
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    route = config["route"]
    used = {route["receiver"]} | {child["receiver"] for child in route.get("routes", [])}
    assert used <= set(receivers)
    for name in used:
        assert receivers[name]["webhook_configs"][0]["url"].startswith("http")
    # Inhibitions name alerts that exist.
    alert_names = {rule["alert"] for rule in rules() if "alert" in rule}
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            assert matcher.split("=", 1)[1].strip().strip('"') in alert_names, matcher
    assert any(child.get("continue") for child in route["routes"])  # critical reaches both receivers


def test_rule_file_is_a_plain_groups_file_for_the_helm_chart():
    document = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text(encoding="utf-8"))
    assert list(document) == ["groups"]
    assert all(set(group) <= {"name", "interval", "rules"} for group in document["groups"])
