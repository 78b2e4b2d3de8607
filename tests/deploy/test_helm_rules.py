"""The chart's PrometheusRule: deploy/prometheus/rules.yml scoped to the release and overridden per alert, run by
the real promtool with two releases (staging and production) side by side in one Prometheus."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.deploy.test_helm_chart import render

PRODUCTION = {"prometheusRule": {"enabled": True}, "config": {"consumer_group": "sentiwatch-prod"}}
STAGING = {"prometheusRule": {"enabled": True, "rules": {"ConsumerLagHigh": {"threshold": 5000, "for": "5m"}}},
           "config": {"consumer_group": "sentiwatch-staging"}}


def rule_groups(values: dict[str, Any], namespace: str = "prod") -> list[dict[str, Any]]:
    return render(values, name="opinions", namespace=namespace).one("PrometheusRule")["spec"]["groups"]


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool missing: run `make install` (Debian package prometheus)"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups(PRODUCTION)}))
    result = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_releases_in_one_prometheus_alert_apart(tmp_path: Path) -> None:
    """The same release name in two namespaces (so the same job): staging stalls with 12,000 records waiting
    while production scores. Only staging's rules fire, they name staging, and staging's lower lag threshold
    applies to staging alone. Lag comes from the broker (Strimzi's Kafka Exporter) for each release's group."""
    (tmp_path / "staging.yml").write_text(yaml.safe_dump({"groups": rule_groups(STAGING, "staging")}))
    (tmp_path / "prod.yml").write_text(yaml.safe_dump({"groups": rule_groups(PRODUCTION, "prod")}))
    job = "opinions-sentiwatch"

    def series(name: str, namespace: str, values: str, **labels: str) -> dict[str, str]:
        text = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, "job": job, **labels}.items())
        return {"series": f"{name}{{{text}}}", "values": values}

    def broker_lag(group: str, values: str) -> dict[str, str]:
        return {"series": f'kafka_consumergroup_lag{{namespace="kafka",job="kafka-exporter",consumergroup="{group}",'
                          f'topic="sentiwatch.texts",partition="0"}}', "values": values}

    staging_labels = {"namespace": "staging", "job": job}
    runbook = "https://github.com/sentiwatch/sentiwatch/blob/main/deploy/prometheus/RUNBOOK.md"
    pipeline = f"/d/opinions-sentiwatch-staging-pipeline/sentiwatch-pipeline?var-namespace=staging&var-job={job}"
    test = {
        "rule_files": ["staging.yml", "prod.yml"],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "1m",
            "input_series": [
                series("sentiwatch_messages_total", "staging", "0+600x10 6000x20", instance="s1", topic="acme",
                       sentiment="negative"),
                series("sentiwatch_consumer_lag", "staging", "0x10 12000x20", instance="s1", partition="0"),
                series("up", "staging", "1x30", instance="s1"),
                series("sentiwatch_messages_total", "prod", "0+600x30", instance="p1", topic="acme",
                       sentiment="negative"),
                series("sentiwatch_consumer_lag", "prod", "50x30", instance="p1", partition="0"),
                series("up", "prod", "1x30", instance="p1"),
                broker_lag("sentiwatch-staging", "0x10 12000x20"),
                broker_lag("sentiwatch-prod", "50x30"),
            ],
            "promql_expr_test": [{
                "expr": "sentiwatch:consumer_lag:sum", "eval_time": "25m",
                "exp_samples": [
                    {"labels": f'sentiwatch:consumer_lag:sum{{namespace="staging",job="{job}"}}', "value": 12000},
                    {"labels": f'sentiwatch:consumer_lag:sum{{namespace="prod",job="{job}"}}', "value": 50}],
            }],
            "alert_rule_test": [
                {"eval_time": "25m", "alertname": "ScoringStalled",
                 "exp_alerts": [{"exp_labels": {"severity": "critical", **staging_labels}, "exp_annotations": {
                     "summary": f"sentiwatch in staging/{job} scores nothing while 12000 records wait",
                     "description": "No text has been scored for 5 minutes although the consumer group is 12000 "
                                    "records behind. Check the workers' logs and /status.",
                     "runbook_url": f"{runbook}#scoringstalled", "dashboard": pipeline}}]},
                # Staging's own threshold (5000) and for (5m); production's default (10000) would not fire.
                {"eval_time": "17m", "alertname": "ConsumerLagHigh",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", **staging_labels}, "exp_annotations": {
                     "threshold": "5000", "summary": f"sentiwatch in staging/{job} is 12000 records behind",
                     "description": "The consumer group has stayed more than 5000 records behind: alerts come late. "
                                    "Add workers (up to the partition count) or check the scoring throughput.",
                     "runbook_url": f"{runbook}#consumerlaghigh", "dashboard": pipeline}}]},
                {"eval_time": "25m", "alertname": "SentiwatchWorkersDown", "exp_alerts": []},
            ],
        }],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_per_alert_overrides() -> None:
    groups = rule_groups({"prometheusRule": {
        "enabled": True,
        "runbookUrlPrefix": "https://wiki.example.com/sentiwatch/runbook/",
        "additionalRuleLabels": {"team": "opinion-desk"},
        "rules": {"ConsumerLagHigh": {"threshold": 50000, "for": "15m", "labels": {"team": "sre"}},
                  "NegativeSentimentRatioHigh": {"disabled": True},
                  "SentiwatchWorkersDown": {"severity": "warning"}}}})
    by_name = alerts(groups)
    assert "NegativeSentimentRatioHigh" not in by_name
    lag = by_name["ConsumerLagHigh"]
    assert lag["expr"].endswith("> 50000") and "10000" not in lag["expr"]
    assert lag["for"] == "15m" and lag["labels"] == {"severity": "warning", "team": "sre"}
    assert lag["annotations"]["threshold"] == "50000" and "more than 50000 records" in lag["annotations"]["description"]
    assert lag["annotations"]["runbook_url"] == "https://wiki.example.com/sentiwatch/runbook#consumerlaghigh"
    assert by_name["SentiwatchWorkersDown"]["labels"] == {"severity": "warning", "team": "opinion-desk"}
    # Untouched alerts keep the file's values, with the release-wide label added.
    spike = by_name["NegativeSentimentSpike"]
    assert spike["for"] == "1m" and spike["labels"] == {"severity": "warning", "team": "opinion-desk"}
    assert spike["annotations"]["dashboard"].startswith("/d/opinions-sentiwatch-prod-topics/")
    # A fractional threshold replaces the whole number, not a part of another one.
    dead = alerts(rule_groups({"prometheusRule": {"enabled": True,
                                                  "rules": {"DeadLettersRising": {"threshold": 0.2}}}}))
    assert "> 0.2\n" in dead["DeadLettersRising"]["expr"] and "> 0.1" in dead["DeadLettersRising"]["expr"]


@pytest.mark.parametrize("rules, message", [
    ({"ConsumerLagHgh": {"threshold": 1}}, "prometheusRule.rules.ConsumerLagHgh: no such alert"),
    ({"ScoringStalled": {"threshold": 1}}, "prometheusRule.rules.ScoringStalled.threshold"),
])
def test_bad_overrides_fail_with_the_key_named(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.errors.HelmRenderError, match=message):
        render({"prometheusRule": {"enabled": True, "rules": rules}})


def test_an_override_of_unknown_shape_is_refused_by_the_schema() -> None:
    with helm.Chart.load(Path(__file__).parents[2] / "helm" / "sentiwatch") as chart:
        with pytest.raises(helm.errors.HelmValuesError, match="treshold"):
            chart.validate_schema({"prometheusRule": {"rules": {"ConsumerLagHigh": {"treshold": 1}}}})
