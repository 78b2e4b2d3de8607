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
