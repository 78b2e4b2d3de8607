"""Every custom resource the chart renders (Prometheus Operator, KEDA, Strimzi) validated against its CRD's own
OpenAPI schema, vendored in tests/deploy/crds/ (its SOURCES.md: which release of which repository), strictly: a
field the CRD does not declare is an error, as `kubectl apply --validate=strict` makes it. And the Strimzi wiring:
KafkaTopic/KafkaUser with the worker's ACLs, the chart reading Strimzi's Secrets as Strimzi writes them."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.deploy.test_helm_chart import PRODUCTION_VALUES, Rendered, _env, _pod, render

CRDS = Path(__file__).parent / "crds"
SCRAM = {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512"}},
         "strimzi": {"cluster": "events", "topics": {"enabled": True}, "user": {"enabled": True}},
         "config": {"consumer_group": "opinions", "input_topic": "Opinions.Texts"}}
MTLS = {"kafka": {"securityProtocol": "SSL"},
        "strimzi": {"cluster": "events", "user": {"enabled": True, "authentication": "tls"}}}
WITH_KEDA = {"autoscaling": {"keda": {"enabled": True}}, "prometheusRule": {"enabled": True},
             "serviceMonitor": {"enabled": True}}


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of every served version of every vendored CRD."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def strict(schema: Any) -> Any:
    """The API server prunes fields a structural schema does not declare; reject them instead, like kubectl's
    strict validation. `metadata` is checked by the API server itself, not the CRD."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def validate(obj: dict[str, Any]) -> None:
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    assert schema is not None, f"no vendored CRD for {obj['apiVersion']} {obj['kind']}: add it to tests/deploy/crds"
    body = {k: v for k, v in obj.items() if k != "metadata"}
    jsonschema.Draft7Validator(schema).validate(body)
    assert isinstance(obj["metadata"]["name"], str) and len(obj["metadata"]["name"]) <= 253


def custom(rendered: Rendered) -> list[dict[str, Any]]:
    return [o for o in rendered.objects if "." in o["apiVersion"].split("/")[0] and not
            o["apiVersion"].startswith(("apps/", "policy/", "networking.k8s.io/", "autoscaling/"))]


CASES = {"production": PRODUCTION_VALUES, "scram": {**SCRAM, **WITH_KEDA}, "mtls": {**MTLS, **WITH_KEDA},
         "strimzi-v1beta2": {**SCRAM, "strimzi": {**SCRAM["strimzi"], "apiVersion": "kafka.strimzi.io/v1beta2"}}}


@pytest.mark.parametrize("case", CASES)
def test_every_custom_resource_matches_its_crd(case: str) -> None:
    objects = custom(render(CASES[case]))
    assert objects
    for obj in objects:
        validate(obj)


def test_the_vendored_schemas_cover_every_custom_kind_the_chart_renders() -> None:
    kinds = {(o["apiVersion"], o["kind"]) for values in CASES.values() for o in custom(render(values))}
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication", "KafkaTopic",
            "KafkaUser"} <= {kind for _, kind in kinds}
    assert kinds <= set(crd_schemas())


@pytest.mark.parametrize("kind, path, value", [
    ("ScaledObject", ["spec", "triggers", 0, "metadata", "lagThreshold"], 5),  # KEDA wants strings
    ("ScaledObject", ["spec", "maxReplicas"], 4),  # KEDA's field is maxReplicaCount
    ("ServiceMonitor", ["spec", "endpoints", 0, "scrapeInterval"], "15s"),
    ("KafkaUser", ["spec", "authorization", "acls", 0, "operations"], ["Read", "Consume"]),
    ("KafkaTopic", ["spec", "partitions"], 0),
])
def test_schema_validation_catches_what_the_operator_would_reject_or_drop(kind: str, path: list, value: Any) -> None:
    (obj,) = [o for o in custom(render({**SCRAM, **WITH_KEDA})) if o["kind"] == kind][:1]
    broken = copy.deepcopy(obj)
    target = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


# --- Strimzi -------------------------------------------------------------------------------------------------

def test_strimzi_resources_are_off_by_default() -> None:
    assert not {"KafkaTopic", "KafkaUser"} & {o["kind"] for o in render(PRODUCTION_VALUES).objects}


def test_kafka_topics_for_every_worker_topic() -> None:
    rendered = render(SCRAM)
    topics = {t["spec"]["topicName"]: t for t in rendered.kind("KafkaTopic")}
    assert set(topics) == {"Opinions.Texts", "sentiwatch.scored", "sentiwatch.alerts", "sentiwatch.dlq",
                           "sentiwatch.feedback", "sentiwatch.review"}
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "events"
        assert topic["spec"]["partitions"] == 4 and topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
        assert topic["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def acl_rules(user: dict[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    return {(a["resource"]["type"], a["resource"]["name"], a["resource"].get("patternType", "literal")):
            set(a["operations"]) for a in user["spec"]["authorization"]["acls"]}


def test_kafka_user_acls_are_what_the_worker_needs() -> None:
    user = render(SCRAM).one("KafkaUser")
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    acls = acl_rules(user)
    assert acls[("topic", "Opinions.Texts", "literal")] == {"Read", "Describe"}
    assert acls[("topic", "sentiwatch.feedback", "literal")] == {"Read", "Describe"}
    for name in ("sentiwatch.scored", "sentiwatch.alerts", "sentiwatch.dlq", "sentiwatch.review"):
        assert acls[("topic", name, "literal")] == {"Write", "Describe"}
    # Faust's changelogs and assignor topic are <app id>- prefixed; the app id is the consumer group.
    assert acls[("topic", "opinions-", "prefix")] >= {"Create", "Read", "Write", "Describe"}
    assert acls[("group", "opinions", "literal")] == {"Read", "Describe"}
    assert not any(kind == "cluster" for kind, _, _ in acls)
    # Without KafkaTopics the worker creates its topics itself, so it may.
    alone = acl_rules(render({**SCRAM, "strimzi": {"cluster": "events", "user": {"enabled": True}}}).one("KafkaUser"))
    assert "Create" in alone[("topic", "Opinions.Texts", "literal")]


def test_scram_user_secret_is_read_as_strimzi_writes_it() -> None:
    """Strimzi's SCRAM Secret (named like the KafkaUser) holds `password` and `sasl.jaas.config`, no username: the
    username is the KafkaUser's name, given as a value; the CA comes from the cluster CA Secret."""
    rendered = render({**SCRAM, **WITH_KEDA})
    user = rendered.one("KafkaUser")["metadata"]["name"]
    pod = _pod(rendered)
    env = _env(pod["containers"][0])
    assert env["SENTIWATCH_KAFKA_SASL_USERNAME"] == user == "opinions-sentiwatch"
    volumes = {v["name"]: v.get("secret") for v in pod["volumes"] if "secret" in v}
    assert volumes["kafka-sasl"]["secretName"] == user
    assert volumes["kafka-sasl"]["items"] == [{"key": "password", "path": "password"}]
    assert volumes["kafka-tls"]["secretName"] == "events-cluster-ca-cert"
    assert volumes["kafka-tls"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    auth = rendered.one("TriggerAuthentication")["spec"]
    assert {(r["parameter"], r["name"], r["key"]) for r in auth["secretTargetRef"]} == {
        ("password", user, "password"), ("ca", "events-cluster-ca-cert", "ca.crt")}
    (username_ref,) = auth["configMapTargetRef"]
    config_map = next(c for c in rendered.kind("ConfigMap") if c["metadata"]["name"] == username_ref["name"])
    assert config_map["data"][username_ref["key"]] == user
    assert rendered.kind("Secret") == []


def test_tls_user_certificate_and_cluster_ca_come_from_two_secrets() -> None:
    rendered = render({**MTLS, **WITH_KEDA})
    user = rendered.one("KafkaUser")
    assert user["spec"]["authentication"] == {"type": "tls"}
    pod = _pod(rendered)
    env = _env(pod["containers"][0])
    assert "SENTIWATCH_KAFKA_SASL_USERNAME" not in env
    volumes = {v["name"]: v.get("secret") for v in pod["volumes"] if "secret" in v}
    assert volumes["kafka-tls"]["secretName"] == "events-cluster-ca-cert"
    assert volumes["kafka-client"]["secretName"] == user["metadata"]["name"]
    assert volumes["kafka-client"]["items"] == [{"key": "user.crt", "path": "tls.crt"},
                                                {"key": "user.key", "path": "tls.key"}]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert env["SENTIWATCH_KAFKA_SSL_CERTFILE"] == mounts["kafka-client"] + "/tls.crt"
    assert env["SENTIWATCH_KAFKA_SSL_CAFILE"] == mounts["kafka-tls"] + "/ca.crt"
    auth = rendered.one("TriggerAuthentication")["spec"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["secretTargetRef"]}
    assert refs == {"ca": ("events-cluster-ca-cert", "ca.crt"), "cert": (user["metadata"]["name"], "user.crt"),
                    "key": (user["metadata"]["name"], "user.key")}


def test_secrets_named_by_hand_in_strimzi_shapes() -> None:
    """Without the chart's KafkaUser: a username value, the password from a SCRAM Secret, the CA and a client
    certificate from two more Secrets."""
    values = {"kafka": {"securityProtocol": "SASL_SSL",
                        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "analytics", "existingSecret": "analytics"},
                        "tls": {"existingSecret": "events-cluster-ca-cert"}}}
    env = _env(_pod(render(values))["containers"][0])
    assert env["SENTIWATCH_KAFKA_SASL_USERNAME"] == "analytics"
    assert env["SENTIWATCH_KAFKA_SASL_PASSWORD_FILE"].endswith("/password")


@pytest.mark.parametrize("values, message", [
    ({"strimzi": {"topics": {"enabled": True}}}, "strimzi.cluster"),
    ({"kafka": {"securityProtocol": "SASL_SSL"}, "strimzi": {"cluster": "events", "user": {"enabled": True}}},
     "SCRAM-SHA-512"),
    ({"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512"}},
      "strimzi": {"cluster": "events", "user": {"enabled": True, "authentication": "tls"}}}, "needs SSL"),
])
def test_inconsistent_strimzi_values_fail_with_the_key_named(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.errors.HelmRenderError, match=message):
        render(values)


def test_vendored_sources_are_recorded() -> None:
    sources = (CRDS / "SOURCES.md").read_text(encoding="utf-8")
    for path in CRDS.glob("*.yaml"):
        assert path.name in sources, f"tests/deploy/crds/SOURCES.md does not say where {path.name} comes from"
    assert json.dumps(sorted(crd_schemas()))  # every file parsed


# --- the alert sink ------------------------------------------------------------------------------------------

def test_alert_sink_deployment_reads_alerts_like_the_worker_and_is_never_selected_as_one() -> None:
    import kubernetes_validate

    from tests.deploy.test_helm_chart import KUBE_VERSIONS

    values = {**SCRAM, "alertsSink": {"enabled": True, "lokiUrl": "http://loki.monitoring:3100"}}
    rendered = render(values)
    sink = next(d for d in rendered.kind("Deployment") if d["metadata"]["name"].endswith("-alerts-sink"))
    worker = next(d for d in rendered.kind("Deployment") if d is not sink)
    for obj in (sink, *rendered.kind("NetworkPolicy")):
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    (container,) = sink["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["alerts-sink", "--start-at", "earliest", "--loki", "http://loki.monitoring:3100"]
    from sentiwatch.cli import build_parser

    parsed = build_parser().parse_args(container["args"])  # the image's entrypoint is `sentiwatch`
    assert (parsed.command, parsed.loki, parsed.start_at) == ("alerts-sink", "http://loki.monitoring:3100", "earliest")
    # The same Kafka connection as the worker (credentials, CA), nothing of the worker's web or bundle.
    sink_env, worker_env = _env(container), _env(worker["spec"]["template"]["spec"]["containers"][0])
    kafka = {k: v for k, v in worker_env.items() if k.startswith(("SENTIWATCH_KAFKA_", "SENTIWATCH_BROKERS"))}
    assert kafka and kafka.items() <= sink_env.items()
    assert "SENTIWATCH_BUNDLE" not in sink_env
    # The worker's selectors (Service, PDB, NetworkPolicy, ServiceMonitor-by-Service) never match the sink's pods.
    sink_labels = sink["spec"]["template"]["metadata"]["labels"]
    selectors = [rendered.one("Service")["spec"]["selector"],
                 rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 worker["spec"]["selector"]["matchLabels"]]
    selectors += [p["spec"]["podSelector"]["matchLabels"] for p in rendered.kind("NetworkPolicy")
                  if p["metadata"]["name"] == worker["metadata"]["name"]]
    for selector in selectors:
        assert not selector.items() <= sink_labels.items(), selector
    policy = next(p for p in rendered.kind("NetworkPolicy") if p["metadata"]["name"] == sink["metadata"]["name"])
    assert policy["spec"]["ingress"] == []
    assert {"port": 3100, "protocol": "TCP"} in [port for rule in policy["spec"]["egress"] for port in rule["ports"]]
    # The KafkaUser lets it read the alerts with its own group.
    acls = [(a["resource"]["type"], a["resource"]["name"], tuple(a["operations"]))
            for a in rendered.one("KafkaUser")["spec"]["authorization"]["acls"]]
    assert ("topic", "sentiwatch.alerts", ("Read", "Describe")) in acls
    assert ("group", "opinions-alerts-sink", ("Read", "Describe")) in acls
    for obj in custom(rendered):
        validate(obj)


def test_alert_sink_without_loki_writes_json_lines_to_stdout() -> None:
    rendered = render({"alertsSink": {"enabled": True}})
    sink = next(d for d in rendered.kind("Deployment") if d["metadata"]["name"].endswith("-alerts-sink"))
    assert sink["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--out", "-"]
    assert not [d for d in render({}).kind("Deployment") if d["metadata"]["name"].endswith("-alerts-sink")]
