"""The Helm chart, linted and rendered by Helm's own Go SDK (helm-python-sdk), manifests checked against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict) and, for the custom resources, structurally."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from sentiwatch.config import Settings, _flat_fields, load_settings
from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "helm" / "sentiwatch"
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
PRODUCTION_VALUES = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema bundled.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication", "KafkaTopic", "KafkaUser"}
# Settings the chart sets from its own values (environment wins over the config file); `config` must refuse them.
CHART_MANAGED_SETTINGS = {
    "brokers", "bundle", "web_host", "web_port", "kafka_security_protocol", "kafka_sasl_mechanism",
    "kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file", "kafka_ssl_cafile",
    "kafka_ssl_certfile", "kafka_ssl_keyfile",
}


@dataclasses.dataclass
class Rendered:
    objects: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (found,) = self.kind(kind)
        return found


def render(values: dict[str, Any] | None = None, chart_path: Path = CHART, name: str = "opinions",
           namespace: str = "prod") -> Rendered:
    with helm.Chart.load(chart_path) as chart:
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    texts = [text for path, text in manifests.items() if path.endswith(".yaml")]  # not NOTES.txt
    objects = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    return Rendered(objects)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


@pytest.fixture(scope="module")
def production() -> Rendered:
    return render(PRODUCTION_VALUES)


STRIMZI_VALUES = {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512"}},
                  "strimzi": {"cluster": "events", "topics": {"enabled": True}, "user": {"enabled": True}},
                  "alertsSink": {"enabled": True, "lokiUrl": "http://loki.monitoring:3100"},
                  "autoscaling": {"hpa": {"enabled": True}}}


@pytest.mark.parametrize("values", [None, PRODUCTION_VALUES, STRIMZI_VALUES], ids=["default", "production", "strimzi"])
def test_chart_lints_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.fixture(scope="module")
def strimzi() -> Rendered:
    return render(STRIMZI_VALUES)


@pytest.mark.parametrize("case", ["default", "production", "strimzi"])
def test_every_manifest_matches_the_kubernetes_schema(case: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(case)
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    for obj in rendered.objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_a_misplaced_field(default: Rendered) -> None:
    deployment = json.loads(json.dumps(default.one("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def _pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("Deployment")["spec"]["template"]["spec"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("case", ["default", "production"])
def test_pod_is_hardened(case: str, request: pytest.FixtureRequest) -> None:
    pod = _pod(request.getfixturevalue(case))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
    (worker,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in worker["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("case", ["default", "production"])
def test_worker_serves_probes_and_metrics_on_its_web_port(case: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(case)
    (worker,) = _pod(rendered)["containers"]
    env = _env(worker)
    assert env["SENTIWATCH_WEB_HOST"] == "0.0.0.0"
    (port,) = worker["ports"]
    assert port["name"] == "web" and str(port["containerPort"]) == env["SENTIWATCH_WEB_PORT"]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    # /ready: partitions assigned, tables recovered, no rebalance (/status always answers 200).
    assert worker["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "web"}
    assert worker["startupProbe"]["httpGet"]["port"] == "web"
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "web"
    assert service["spec"]["selector"].items() <= _pod_labels(rendered).items()
    config_dir, config_file = os.path.split(env["SENTIWATCH_CONFIG"])
    mount = next(m for m in worker["volumeMounts"] if m["mountPath"] == config_dir)
    volume = next(v for v in _pod(rendered)["volumes"] if v["name"] == mount["name"])
    config = next(c for c in rendered.kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])
    assert isinstance(json.loads(config["data"][config_file]), dict)


def test_probe_paths_are_pages_the_worker_serves(default: Rendered) -> None:
    """Read from the worker's own page declarations, so a renamed page cannot leave a probe failing forever."""
    import re

    pages = set(re.findall(r'@app\.page\("([^"]+)"\)', (REPO_ROOT / "streamer" / "app.py").read_text()))
    (worker,) = _pod(default)["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert worker[probe]["httpGet"]["path"] in pages, (probe, sorted(pages))


def test_worker_settings_load_from_the_rendered_config_and_environment(production: Rendered, tmp_path: Path) -> None:
    """The real settings loader accepts what the chart hands the worker (file + plain environment)."""
    (worker,) = _pod(production)["containers"]
    env = {name: value for name, value in _env(worker).items() if isinstance(value, str)}
    config = next(c for c in production.kind("ConfigMap") if "sentiwatch.json" in c["data"])
    config_file = tmp_path / "sentiwatch.json"
    config_file.write_text(config["data"]["sentiwatch.json"])
    env["SENTIWATCH_CONFIG"] = str(config_file)
    settings = load_settings(environ=env)
    assert settings.input_topic == "opinions.texts" and settings.topic_partitions == 12
    assert settings.watchlist == {"ACME": ["acme", "$acme", "acme corp"]}
    assert settings.brokers == PRODUCTION_VALUES["kafka"]["brokers"]
    assert (settings.web_host, settings.web_port) == ("0.0.0.0", 6066)
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password == ""
    assert settings.kafka_sasl_password_file == "/var/run/secrets/sentiwatch/kafka-sasl/password"
    assert settings.bundle == "/models/bundle"


def _pod_labels(rendered: Rendered) -> dict[str, str]:
    return rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]


def test_kafka_credentials_come_from_existing_secrets(production: Rendered) -> None:
    pod = _pod(production)
    (worker,) = pod["containers"]
    env = _env(worker)
    assert env["SENTIWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SENTIWATCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["SENTIWATCH_KAFKA_SASL_USERNAME"] == {
        "secretKeyRef": {"name": "sentiwatch-kafka-user", "key": "username"}}
    # The password only as a mounted file: never an environment variable, never an argument.
    assert "SENTIWATCH_KAFKA_SASL_PASSWORD" not in env
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    password_dir, password_file = os.path.split(env["SENTIWATCH_KAFKA_SASL_PASSWORD_FILE"])
    secret = volumes[mounts[password_dir]]["secret"]
    assert secret["secretName"] == "sentiwatch-kafka-user"
    assert {"key": "password", "path": password_file} in secret["items"]
    ca_dir, ca_file = os.path.split(env["SENTIWATCH_KAFKA_SSL_CAFILE"])
    ca_secret = volumes[mounts[ca_dir]]["secret"]
    assert ca_secret["secretName"] == "kafka-cluster-ca-cert"
    assert {"key": "ca.crt", "path": ca_file} in ca_secret["items"]
    assert "secret" not in json.dumps(worker["args"])
    assert production.kind("Secret") == []  # the chart never holds credentials itself


def test_mutual_tls_mounts_client_certificate_and_key() -> None:
    tls = {"existingSecret": "kafka-user-tls", "caKey": "ca.crt", "certKey": "user.crt", "keyKey": "user.key"}
    pod = _pod(render({"kafka": {"securityProtocol": "SSL", "tls": tls}}))
    env = _env(pod["containers"][0])
    assert "SENTIWATCH_KAFKA_SASL_USERNAME" not in env
    secrets = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "kafka-user-tls"]
    paths = {item["key"]: item["path"] for volume in secrets for item in volume["secret"]["items"]}
    assert paths == {"ca.crt": "ca.crt", "user.crt": "tls.crt", "user.key": "tls.key"}
    assert env["SENTIWATCH_KAFKA_SSL_CERTFILE"].endswith("/tls.crt")
    assert env["SENTIWATCH_KAFKA_SSL_KEYFILE"].endswith("/tls.key")
    # SSL with no CA Secret: the system trust store, nothing mounted.
    system_trust = _pod(render({"kafka": {"securityProtocol": "SSL"}}))
    assert "SENTIWATCH_KAFKA_SSL_CAFILE" not in _env(system_trust["containers"][0])
    assert not [v for v in system_trust["volumes"] if "secret" in v]


def test_bundle_sources() -> None:
    image_pod = _pod(render())
    (init,) = image_pod["initContainers"]
    assert init["command"][-1] == "/models/bundle/"
    assert any(v["name"] == "bundle" and "emptyDir" in v for v in image_pod["volumes"])

    pvc_pod = _pod(render(PRODUCTION_VALUES))
    assert "initContainers" not in pvc_pod
    (claim,) = [v for v in pvc_pod["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "sentiwatch-models", "readOnly": True}
    bundle_mount = next(m for m in pvc_pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/models/bundle")
    assert bundle_mount["subPath"] == "bundles/2026-11-01" and bundle_mount["readOnly"] is True

    baked_pod = _pod(render({"bundle": {"source": "baked"}}))
    assert "initContainers" not in baked_pod
    assert not any(m["mountPath"] == "/models/bundle" for m in baked_pod["containers"][0]["volumeMounts"])


def test_topology_spread_and_disruption_budget(default: Rendered) -> None:
    pod = _pod(default)
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= _pod_labels(default).items()
    budget = default.one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert default.one("Deployment")["spec"]["replicas"] == 2


def test_network_policy_limits_ingress_to_the_web_port(production: Rendered) -> None:
    policy = production.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "web", "protocol": "TCP"}]
    assert ingress["from"] == PRODUCTION_VALUES["networkPolicy"]["metricsFrom"]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(9093, "TCP"), (53, "UDP")} <= egress_ports


# --- custom resources ----------------------------------------------------------------------------------------

def test_optional_custom_resources_are_off_by_default(default: Rendered) -> None:
    kinds = {o["kind"] for o in default.objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ScaledObject", "HorizontalPodAutoscaler"}


def test_service_monitor_scrapes_the_service(production: Rendered) -> None:
    monitor = production.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = production.one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["prod"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"


def test_prometheus_rule_is_deploy_prometheus_rules_yml(production: Rendered) -> None:
    """One source of truth: the chart reads the rules file through a symbolic link; only the release's selector
    and dashboard links differ (tests/deploy/test_helm_rules.py checks what they do)."""
    link = CHART / "files" / "prometheus-rules.yml"
    assert link.is_symlink() and link.resolve() == RULES_FILE.resolve()
    rule = production.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    file_groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    selector = 'namespace="prod", job="opinions-sentiwatch"'
    for rendered_group, file_group in zip(rule["spec"]["groups"], file_groups, strict=True):
        for rendered, original in zip(rendered_group["rules"], file_group["rules"], strict=True):
            assert rendered.get("record") == original.get("record") and rendered.get("alert") == original.get("alert")
            expected = original["expr"].replace('job="sentiwatch"', selector).replace(
                'consumergroup="sentiwatch", topic="sentiwatch.texts"',
                'consumergroup="sentiwatch-prod", topic="opinions.texts"')
            assert rendered["expr"] == expected
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("record" in item) != ("alert" in item) and item["expr"], item


def test_packaged_chart_carries_the_linked_files(tmp_path: Path, production: Rendered) -> None:
    """`helm package` stores the content behind the links, so the archive renders the same objects."""
    with helm.Chart.load(CHART) as chart:
        archive = Path(chart.save(tmp_path))
    assert render(PRODUCTION_VALUES, chart_path=archive).objects == production.objects


def test_dashboard_config_maps_are_the_dashboard_files(production: Rendered) -> None:
    assert (CHART / "dashboards").is_symlink() and (CHART / "dashboards").resolve() == DASHBOARDS.resolve()
    maps = [c for c in production.kind("ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    files = {p.name: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert {name for c in maps for name in c["data"]} == set(files)
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "sentiwatch"}
        ((name, text),) = config_map["data"].items()
        rendered, original = json.loads(text), files[name]
        # The release's own uid and title (two releases in one Grafana); everything else is the file.
        assert rendered["uid"] == f"opinions-sentiwatch-prod-{name.removeprefix('sentiwatch-').removesuffix('.json')}"
        assert rendered["title"] == original["title"].replace("sentiwatch —", "sentiwatch prod/opinions —")
        assert {**rendered, "uid": original["uid"], "title": original["title"]} == original


def test_two_releases_get_distinct_dashboard_uids() -> None:
    def uids(name: str, namespace: str) -> set[str]:
        maps = render({}, name=name, namespace=namespace).kind("ConfigMap")
        return {json.loads(text)["uid"] for c in maps for key, text in c["data"].items()
                if key.startswith("sentiwatch-") and key.endswith(".json")}

    staging, production = uids("opinions", "staging"), uids("opinions", "prod")
    assert len(staging) == 2 and not staging & production
    assert all(len(uid) <= 40 for uid in uids("a-very-long-release-name-for-opinions", "a-long-namespace-name"))


def test_keda_scales_on_consumer_lag_capped_at_partitions(production: Rendered) -> None:
    scaled = production.one("ScaledObject")
    deployment = production.one("Deployment")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert spec["maxReplicaCount"] == PRODUCTION_VALUES["config"]["topic_partitions"] == 12
    assert spec["minReplicaCount"] == 2
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert metadata["consumerGroup"] == "sentiwatch-prod" and metadata["topic"] == "opinions.texts"
    assert metadata["bootstrapServers"] == PRODUCTION_VALUES["kafka"]["brokers"]
    assert metadata["sasl"] == "scram_sha512" and metadata["tls"] == "enable"
    assert all(isinstance(v, str) for v in metadata.values())  # KEDA's metadata is a map of strings
    auth = production.one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": ("sentiwatch-kafka-user", "username"),
                    "password": ("sentiwatch-kafka-user", "password"),
                    "ca": ("kafka-cluster-ca-cert", "ca.crt")}


def test_hpa_alternative_is_capped_too() -> None:
    rendered = render({"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 10}}, "config": {"topic_partitions": 6}})
    hpa = rendered.one("HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, KUBE_VERSIONS[-1], strict=True)
    assert hpa["spec"]["maxReplicas"] == 6
    assert rendered.kind("ScaledObject") == []


# --- values that must be refused -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad_values, names", [
    ({"securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
                          "capabilities": {"drop": ["ALL"]}}}, "readOnlyRootFilesystem"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    ({"kafka": {"securityProtocol": "TLS"}}, "securityProtocol"),
    ({"config": {"window_secs": 60}}, "window_secs"),
    ({"config": {"brokers": "elsewhere:9092"}}, "brokers"),
    ({"config": {"window_seconds": "a minute"}}, "window_seconds"),
    ({"replicaCount": "two"}, "replicaCount"),
    ({"bundle": {"source": "s3"}}, "source"),
    ({"imageTag": "latest"}, "imageTag"),
], ids=["writable-root", "root-user", "protocol", "unknown-setting", "chart-managed-setting", "setting-type",
        "replicas-type", "bundle-source", "unknown-top-level"])
def test_schema_rejects_bad_values(bad_values: dict[str, Any], names: str) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(PRODUCTION_VALUES)
        with pytest.raises(helm.errors.HelmValuesError, match=names):
            chart.validate_schema(bad_values)


def test_lint_fails_on_a_values_file_the_schema_rejects(tmp_path: Path) -> None:
    report = helm.lint(CHART, {"kafka": {"securityProtocol": "TLS"}}, strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])


@pytest.mark.parametrize("bad_values, message", [
    ({"kafka": {"securityProtocol": "SASL_SSL"}}, "kafka.sasl.existingSecret"),
    ({"bundle": {"source": "pvc"}}, "bundle.pvc.claimName"),
    ({"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}}, "not both"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {"existingSecret": "kafka-ca", "certKey": "user.crt"}}},
     "kafka.tls.keyKey"),
])
def test_inconsistent_values_fail_with_the_key_named(bad_values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.errors.HelmRenderError, match=message):
        render(bad_values)


def test_config_schema_lists_every_setting_the_chart_does_not_manage() -> None:
    """values.schema.json's `config` follows sentiwatch.config.Settings: a new setting must be added there."""
    json_types = {str: "string", int: "integer", float: "number", bool: "boolean"}
    expected = {}
    for name, hint in _flat_fields(Settings).items():
        if name not in CHART_MANAGED_SETTINGS:
            expected[name] = json_types.get(hint, {dict: "object", list: "array"}.get(typing.get_origin(hint)))
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    assert schema["additionalProperties"] is False
    actual = {name: prop["type"] for name, prop in schema["properties"].items()}
    missing = {name: {"type": kind} for name, kind in expected.items() if actual.get(name) != kind}
    stale = sorted(actual.keys() - expected.keys())
    assert not missing and not stale, (
        f"helm/sentiwatch/values.schema.json, properties.config.properties: add or fix {json.dumps(missing)}; "
        f"remove {stale}")


# --- rollouts ------------------------------------------------------------------------------------------------

def test_rollout_replaces_one_worker_at_a_time(default: Rendered) -> None:
    spec = default.one("Deployment")["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert spec["minReadySeconds"] > 0


def test_autoscalers_scale_down_slowly_one_worker_at_a_time(production: Rendered) -> None:
    hpa = render({"autoscaling": {"hpa": {"enabled": True}}}).one("HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, KUBE_VERSIONS[0], strict=True)
    keda = production.one("ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for behavior in (hpa["spec"]["behavior"], keda):
        down = behavior["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
        assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]


def test_default_install_uses_production_kafka_timeouts(default: Rendered, tmp_path: Path) -> None:
    """The worker's own 6 s session timeout suits the embedded broker only; the chart's defaults say 30 s."""
    config = next(c for c in default.kind("ConfigMap") if "sentiwatch.json" in c["data"])
    (tmp_path / "sentiwatch.json").write_text(config["data"]["sentiwatch.json"])
    settings = load_settings(tmp_path / "sentiwatch.json", environ={})
    assert settings.kafka_session_timeout_seconds == 30 and settings.kafka_heartbeat_seconds == 3
    assert Settings().kafka_session_timeout_seconds < 30


def test_start_at_reaches_the_worker_and_keda() -> None:
    rendered = render({**PRODUCTION_VALUES, "config": {**PRODUCTION_VALUES["config"], "start_at": "latest"}})
    config = next(c for c in rendered.kind("ConfigMap") if "sentiwatch.json" in c["data"])
    assert json.loads(config["data"]["sentiwatch.json"])["start_at"] == "latest"
    (trigger,) = rendered.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["offsetResetPolicy"] == "latest"
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.errors.HelmValuesError, match="start_at"):
        chart.validate_schema({"config": {"start_at": "beginning"}})
