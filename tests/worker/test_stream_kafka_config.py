import logging
import ssl

import pytest

from sentiwatch.config import load_settings
from sentiwatch.errors import ConfigError
from sentiwatch.streamer.kafka.connection import aiokafka_options, faust_credentials, security_from_settings

SECRET = "s3cr3t-Pa55"


def test_plaintext_by_default():
    options = aiokafka_options(load_settings(environ={"SENTIWATCH_BROKERS": "a:9092,b:9092"}))
    assert options == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(load_settings(environ={})) is None


def test_sasl_ssl_from_a_mounted_password_file(tmp_path, caplog):
    password_file = tmp_path / "password"
    password_file.write_text(SECRET + "\n")
    env = {"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SENTIWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "SENTIWATCH_KAFKA_SASL_USERNAME": "sentiwatch", "SENTIWATCH_KAFKA_SASL_PASSWORD_FILE": str(password_file)}
    with caplog.at_level(logging.DEBUG):
        settings = load_settings(environ=env)
        options = aiokafka_options(settings)
        credentials = faust_credentials(settings)
        logging.getLogger("test").info("settings %r security %r credentials %r", settings,
                                       security_from_settings(settings), credentials)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("sentiwatch", SECRET)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert credentials.protocol.value == "SASL_SSL" and credentials.password == SECRET
    assert SECRET not in caplog.text
    assert SECRET not in repr(settings) and SECRET not in repr(security_from_settings(settings))


def test_password_from_environment():
    settings = load_settings(environ={"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                      "SENTIWATCH_KAFKA_SASL_USERNAME": "u", "SENTIWATCH_KAFKA_SASL_PASSWORD": SECRET})
    options = aiokafka_options(settings)
    assert options["sasl_plain_password"] == SECRET and "ssl_context" not in options
    assert SECRET not in repr(settings)


@pytest.mark.parametrize("env, key", [
    ({"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SENTIWATCH_KAFKA_SASL_PASSWORD": "x"},
     "kafka_sasl_username"),
    ({"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SENTIWATCH_KAFKA_SASL_USERNAME": "u"},
     "kafka_sasl_password"),
    ({"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "SENTIWATCH_KAFKA_SSL_CAFILE": "/nope/ca.pem"},
     "kafka_ssl_cafile"),
    ({"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SENTIWATCH_KAFKA_SASL_USERNAME": "u",
      "SENTIWATCH_KAFKA_SASL_PASSWORD": "x", "SENTIWATCH_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl_mechanism"),
])
def test_bad_security_settings_name_the_key(env, key):
    with pytest.raises(ConfigError, match=key):
        security_from_settings(load_settings(environ=env))


def test_replication_and_fetch_wait_follow_the_cluster_unless_set():
    """Issue 13, items 6 and 7: topics used to be created with one replica on any cluster, and the 100 ms fetch
    wait the embedded broker needs shipped to production."""
    from sentiwatch.streamer.kafka.connection import Cluster, for_cluster, topic_configs

    auto = load_settings(environ={})
    assert topic_configs(auto) == {}  # unresolved: the broker's default
    three = for_cluster(auto, Cluster("prod-cluster", 3))
    assert (three.kafka_replication_factor, three.kafka_min_insync_replicas, three.kafka_fetch_max_wait_ms) == (3, 2,
                                                                                                                500)
    assert topic_configs(three) == {"min.insync.replicas": "2"}
    six = for_cluster(auto, Cluster("big", 6))
    assert (six.kafka_replication_factor, six.kafka_min_insync_replicas) == (3, 2)
    embedded = for_cluster(auto, Cluster("tansu_cluster", 1))
    assert (embedded.kafka_replication_factor, embedded.kafka_min_insync_replicas,
            embedded.kafka_fetch_max_wait_ms) == (1, 1, 100)
    explicit = load_settings(environ={"SENTIWATCH_KAFKA_REPLICATION_FACTOR": "2",
                                      "SENTIWATCH_KAFKA_MIN_INSYNC_REPLICAS": "2",
                                      "SENTIWATCH_KAFKA_FETCH_MAX_WAIT_MS": "250"})
    resolved = for_cluster(explicit, Cluster("prod-cluster", 3))
    assert (resolved.kafka_replication_factor, resolved.kafka_min_insync_replicas,
            resolved.kafka_fetch_max_wait_ms) == (2, 2, 250)
    with pytest.raises(ConfigError, match="'kafka_replication_factor': 3 replicas but the cluster"):
        for_cluster(load_settings(environ={"SENTIWATCH_KAFKA_REPLICATION_FACTOR": "3"}), Cluster("tansu_cluster", 1))
    with pytest.raises(ConfigError, match="'kafka_min_insync_replicas'"):
        load_settings(environ={"SENTIWATCH_KAFKA_REPLICATION_FACTOR": "2", "SENTIWATCH_KAFKA_MIN_INSYNC_REPLICAS": "3"})
    with pytest.raises(ConfigError, match="'kafka_fetch_max_wait_ms'"):
        load_settings(environ={"SENTIWATCH_KAFKA_FETCH_MAX_WAIT_MS": "-1"})


@pytest.mark.integration
def test_topics_are_created_as_the_embedded_cluster_allows():
    import asyncio

    from sentiwatch.streamer.kafka.connection import describe_cluster, ensure_topics
    from tests.streaming_helpers import running_broker

    with running_broker() as brokers:
        settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
        cluster = asyncio.run(describe_cluster(settings))
        assert cluster.embedded and cluster.brokers == 1
        assert asyncio.run(ensure_topics(settings, ["rf.a", "rf.b"])) == {"rf.a": 4, "rf.b": 4}
        refused = load_settings(environ={"SENTIWATCH_BROKERS": brokers, "SENTIWATCH_KAFKA_REPLICATION_FACTOR": "3"})
        with pytest.raises(ConfigError, match="kafka_replication_factor"):
            asyncio.run(ensure_topics(refused, ["rf.c"]))
