"""The Grafana dashboards: typed against Grafana's own schema with tsc, and querying only metrics that exist.

No Grafana server runs here. `@grafana/schema` is Grafana's published TypeScript model of a dashboard (and
of each panel plugin's options); `tsc --noEmit` on `const dashboard: SentiwatchDashboard = <json>` rejects
unknown fields, wrong types and misspelt enumeration values.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SCHEMA_CHECK = GRAFANA / "schema-check"
TSC = SCHEMA_CHECK / "node_modules" / "typescript" / "bin" / "tsc"
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yml"

# CONTRACT.md's metrics plus the two the streamer adds (consumer lag, alert transitions).
CONTRACT_METRICS = {
    "sentiwatch_messages_total": "counter",
    "sentiwatch_dead_letters_total": "counter",
    "sentiwatch_late_records_total": "counter",
    "sentiwatch_negative_ratio": "gauge",
    "sentiwatch_negative_baseline_ratio": "gauge",
    "sentiwatch_spike_score": "gauge",
    "sentiwatch_spike_active": "gauge",
    "sentiwatch_inference_seconds": "histogram",
    "sentiwatch_batch_size": "histogram",
    "sentiwatch_end_to_end_seconds": "histogram",
    "sentiwatch_model_info": "gauge",
    "sentiwatch_consumer_lag": "gauge",
    "sentiwatch_alerts_total": "counter",
    "sentiwatch_rebalances_total": "counter",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# Metric names in PromQL: sentiwatch_* series and sentiwatch:* recording rules (label names never start so).
METRIC_NAME = re.compile(r"\bsentiwatch[_:][a-zA-Z0-9_:]*")


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and template variable."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation and "expr" in annotation["target"]:
            yield f"annotation {annotation['name']!r}", annotation["target"]["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']!r}", variable["query"]["query"]


def _recording_rules() -> set[str]:
    if not RULES_FILE.exists():
        return set()
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def unknown_metrics(dashboard: dict[str, Any], recording_rules: set[str]) -> list[str]:
    problems = []
    for where, expr in _queries(dashboard):
        for name in METRIC_NAME.findall(expr):
            if ":" in name:
                if name not in recording_rules:
                    problems.append(f"{where}: recording rule {name} is not in {RULES_FILE.name}")
                continue
            base = name
            for suffix in HISTOGRAM_SERIES:
                if name.endswith(suffix) and CONTRACT_METRICS.get(name[: -len(suffix)]) == "histogram":
                    base = name[: -len(suffix)]
            if base not in CONTRACT_METRICS:
                problems.append(f"{where}: metric {name} is not in the contract")
    return problems


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    assert DASHBOARDS, "no dashboards in deploy/grafana/dashboards"
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def test_every_queried_metric_exists(dashboards: dict[str, dict[str, Any]]) -> None:
    recording_rules = _recording_rules()
    for name, dashboard in dashboards.items():
        assert not unknown_metrics(dashboard, recording_rules), name


def test_metric_check_catches_a_misspelt_metric(dashboards: dict[str, dict[str, Any]]) -> None:
    dashboard = json.loads(json.dumps(next(iter(dashboards.values()))))
    target = next(t for p in _panels(dashboard) for t in p.get("targets", []))
    target["expr"] = "sum(rate(sentiwatch_mesages_total[5m])) + sentiwatch:nope:rate5m"
    problems = unknown_metrics(dashboard, recording_rules=set())
    assert any("sentiwatch_mesages_total" in p for p in problems)
    assert any("sentiwatch:nope:rate5m" in p for p in problems)


def test_dashboards_cover_what_operators_need(dashboards: dict[str, dict[str, Any]]) -> None:
    queried = {name for d in dashboards.values() for _, expr in _queries(d) for name in METRIC_NAME.findall(expr)}
    for metric in ("sentiwatch_messages_total", "sentiwatch_negative_ratio", "sentiwatch_negative_baseline_ratio",
                   "sentiwatch_spike_score", "sentiwatch_end_to_end_seconds_bucket", "sentiwatch_consumer_lag",
                   "sentiwatch_dead_letters_total", "sentiwatch_model_info"):
        assert metric in queried, metric
    for name, dashboard in dashboards.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        # One release at a time: two releases in one Prometheus never mix in a panel.
        assert {"namespace", "job"} <= variables.keys(), name
        for panel in _panels(dashboard):
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
        assert len({p["id"] for p in _panels(dashboard)}) == len(list(_panels(dashboard))), f"{name}: duplicate ids"
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    topics = dashboards["sentiwatch-topics"]
    assert any("histogram_quantile" in expr for d in dashboards.values() for _, expr in _queries(d))
    assert any(a.get("target", {}).get("expr", "").find("sentiwatch_spike_active") >= 0
               for a in topics["annotations"]["list"]), "alert annotations missing"


def test_no_panel_repeats_per_topic(dashboards: dict[str, dict[str, Any]]) -> None:
    """With the topic variable on All, a repeated panel became one panel per topic (200-400 at the topic cap): the
    topic is a picker, and the top-N table finds the topics worth picking."""
    for name, dashboard in dashboards.items():
        assert not [p["title"] for p in _panels(dashboard) if p.get("repeat")], name
    topic = next(v for v in dashboards["sentiwatch-topics"]["templating"]["list"] if v["name"] == "topic")
    assert topic["includeAll"] is False
    (top_table,) = [p for p in _panels(dashboards["sentiwatch-topics"]) if p["type"] == "table"]
    assert "topk($top" in top_table["targets"][0]["expr"] and "sentiwatch_negative_baseline_ratio" in \
        top_table["targets"][0]["expr"]


def test_latest_window_share_is_the_windows_gauge_not_a_rate(dashboards: dict[str, dict[str, Any]]) -> None:
    (panel,) = [p for p in _panels(dashboards["sentiwatch-topics"]) if p["title"] == "Negative share (latest window)"]
    for target in panel["targets"]:
        assert "sentiwatch_negative_ratio" in target["expr"]
        assert not re.search(r"\b(rate|irate|increase)\(", target["expr"]), target["expr"]


def test_every_query_is_scoped_to_the_selected_release(dashboards: dict[str, dict[str, Any]]) -> None:
    """Two releases in one Prometheus: every sentiwatch series and every pod metric is filtered by the namespace and
    job variables (pod metrics by the Deployment's pods, named after the job)."""
    for name, dashboard in dashboards.items():
        for where, expr in _queries(dashboard):
            if where in ("variable 'namespace'", "variable 'job'"):
                continue
            for selector in re.findall(r"\b(?:sentiwatch[_:][a-z_:0-9]+|up|process_[a-z_]+|container_[a-z_]+|"
                                       r"kube_[a-z_]+)(\{[^}]*\})?", expr):
                assert 'namespace=~"$namespace"' in selector, (name, where, expr)
                assert '$job' in selector, (name, where, expr)


def test_sre_panels_show_the_pod_and_broker_view(dashboards: dict[str, dict[str, Any]]) -> None:
    queries = " ".join(expr for _, expr in _queries(dashboards["sentiwatch-pipeline"]))
    for needed in ("sentiwatch:broker_consumer_lag:sum", "sentiwatch:consumer_lag:sum",
                   "container_cpu_usage_seconds_total", "container_cpu_cfs_throttled_periods_total",
                   "container_memory_working_set_bytes",
                   "kube_pod_container_status_restarts_total", "kube_deployment_spec_replicas",
                   "kube_deployment_status_replicas_available", "kube_horizontalpodautoscaler_status_desired_replicas",
                   "sentiwatch_rebalances_total", "process_cpu_seconds_total", "process_resident_memory_bytes",
                   "up{"):
        assert needed in queries, needed
    assert "instance" not in queries  # a pod IP says nothing; pods are named


# Grafana's built-in variables, replaced by values Prometheus accepts so that promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*",
                     "$job": "sentiwatch", "$topic": ".*", "$pod": ".*", "$top": "10"}


def promql_of(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_every_query_is_valid_promql(dashboards: dict[str, dict[str, Any]], tmp_path: Any) -> None:
    """Prometheus' own parser, through `promtool check rules` on one recording rule per query."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make install` (Debian package prometheus)"
    rules = [{"record": f"check:query:{i}", "expr": promql_of(expr)}
             for i, (_, expr) in enumerate(q for d in dashboards.values() for q in _queries(d))
             if not expr.startswith("label_values(")]  # a Grafana function, not PromQL
    assert len(rules) > 10
    rule_file = tmp_path / "queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana's schema, through tsc ---------------------------------------------------------------------------

def _typescript_for(dashboard: dict[str, Any]) -> str:
    lines = ["import type { PanelConfigs, SentiwatchDashboard } from '../sentiwatch-dashboard';",
             f"export const dashboard: SentiwatchDashboard = {json.dumps(dashboard, indent=1)};"]
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        config: dict[str, Any] = {"options": panel.get("options", {})}
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            config["custom"] = custom
        lines.append(f"export const panel{panel['id']}: PanelConfigs['{panel['type']}'] = {json.dumps(config)};")
    return "\n".join(lines) + "\n"


def type_check(dashboards: dict[str, dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """tsc over one generated file per dashboard, in a private folder next to node_modules."""
    workdir = SCHEMA_CHECK / f".check-{uuid.uuid4().hex[:8]}"
    workdir.mkdir()
    try:
        (workdir / "tsconfig.json").write_text(json.dumps({"extends": "../tsconfig.json", "include": ["*.ts"]}))
        for name, dashboard in dashboards.items():
            (workdir / f"{name}.ts").write_text(_typescript_for(dashboard))
        return subprocess.run(["node", str(TSC), "-p", str(workdir)], capture_output=True, text=True, timeout=120,
                              cwd=SCHEMA_CHECK)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def tsc() -> None:
    """The check is required, not optional: a missing toolchain fails instead of skipping."""
    assert shutil.which("node"), "node is not installed"
    assert TSC.exists(), "deploy/grafana/schema-check/node_modules missing: run `make install`"


@pytest.mark.usefixtures("tsc")
def test_dashboards_match_grafana_schema(dashboards: dict[str, dict[str, Any]]) -> None:
    result = type_check(dashboards)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("tsc")
def test_schema_check_rejects_broken_dashboards(dashboards: dict[str, dict[str, Any]]) -> None:
    """Each mutation is one a hand edit could make; each must fail tsc, so the check above is not vacuous."""
    def mutated(change: Any) -> dict[str, dict[str, Any]]:
        copy = json.loads(json.dumps(dashboards))
        change(copy["sentiwatch-pipeline"])
        return {"sentiwatch-pipeline": copy["sentiwatch-pipeline"]}

    def first(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
        return next(p for p in _panels(dashboard) if p["type"] == kind)

    mutations = {
        "schemaVersion as a string": lambda d: d.update(schemaVersion="41"),
        "unknown dashboard field": lambda d: d.update(refreshh="30s"),
        "misspelt colour mode": lambda d: first(d, "timeseries")["fieldConfig"]["defaults"]["color"].update(
            mode="palette-clasic"),
        "gridPos width as text": lambda d: first(d, "stat")["gridPos"].update(w="6"),
        "bad timeseries draw style": lambda d: first(d, "timeseries")["fieldConfig"]["defaults"]["custom"].update(
            drawStyle="curve"),
        "bad legend placement": lambda d: first(d, "timeseries")["options"]["legend"].update(placement="left"),
    }
    # One file per mutation: tsc reports errors per file, so one mutation's error cannot hide another's absence.
    batch = {}
    for label, change in mutations.items():
        dashboard = mutated(change)["sentiwatch-pipeline"]
        batch[re.sub(r"\W+", "-", label)] = dashboard
    result = type_check(batch)
    assert result.returncode != 0
    for name in batch:
        assert f"{name}.ts(" in result.stdout, f"tsc accepted the mutation {name!r}:\n{result.stdout}"


def test_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sentiwatch.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
