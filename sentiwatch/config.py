"""One settings object, read once at start and passed down.

Sources, later ones winning: the defaults below, an optional config file (TOML, JSON or YAML),
environment variables `SENTIWATCH_<NAME>`, then command-line flags. Nested sections (the detector)
are flattened with their name as prefix: `detector_min_volume` in a file is
`SENTIWATCH_DETECTOR_MIN_VOLUME` in the environment.

An unknown key in a file is an error naming it; an unknown `SENTIWATCH_*` variable is only a
warning, because Kubernetes injects `SENTIWATCH_SERVICE_HOST`, `SENTIWATCH_PORT_...` for a Service
of that name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentiwatch.detector_config import DetectorConfig
from sentiwatch.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "SENTIWATCH_"


@dataclasses.dataclass(frozen=True)
class Settings:
    # Kafka
    brokers: str = "127.0.0.1:9092"
    input_topic: str = "sentiwatch.texts"
    scored_topic: str = "sentiwatch.scored"
    alerts_topic: str = "sentiwatch.alerts"
    dlq_topic: str = "sentiwatch.dlq"
    feedback_topic: str = "sentiwatch.feedback"  # analysts' labels in (streamer/quality/feedback.py)
    review_topic: str = "sentiwatch.review"  # records worth labelling out (streamer/quality/review.py)
    consumer_group: str = "sentiwatch"
    topic_partitions: int = 4
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; credentials only from the environment or files.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)  # never in logs or reprs
    kafka_sasl_password_file: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Faust's default session timeout (60 s) makes every group join wait 30 s.
    kafka_session_timeout_seconds: float = 6.0
    kafka_heartbeat_seconds: float = 1.0
    # How long a starting worker or replay keeps trying to reach the brokers before giving up.
    kafka_connect_timeout_seconds: float = 30.0
    # A running worker exits (status 1) when no broker has answered for this long, so that its
    # supervisor restarts it instead of it retrying forever (streamer/ops/watchdog.py).
    kafka_unreachable_exit_seconds: float = 30.0
    # How long a fetch may wait at the broker for records, ms. 0: 100 on the embedded broker (it does not wake a
    # waiting fetch when records arrive), else aiokafka's default, 500 (streamer/kafka/faust_tuning.py).
    kafka_fetch_max_wait_ms: int = 0
    # Replication factor of the topics the worker creates and of Faust's changelog topics; 0: the number of
    # brokers, at most 3 (1 on the embedded broker).
    kafka_replication_factor: int = 0
    # min.insync.replicas of those topics; 0: the replication factor - 1, at least 1 (2 on three brokers).
    kafka_min_insync_replicas: int = 0

    # Model
    bundle: str = ""
    # auto: fp16 on CUDA when CUDA really came up, else int8 (else fp32) on CPU.
    variant: str = "auto"
    intra_op_threads: int = 0  # cores for inference (CPU: passes run at once); 0: all this process may use
    # Rollout without a restart (streamer/inference/reload.py): seconds between looks at the bundle path (0: never);
    # records a new model scores in shadow beside the serving one before it takes over (0: switch at once).
    model_reload_seconds: float = 5.0
    model_shadow_records: int = 0
    # Scored ids whose label the worker remembers, to compare analysts' feedback without text with (0: none).
    feedback_recent_ids: int = 100_000
    # Scored records the live drift gauges are computed over (the latest ones; streamer/quality/drift.py).
    drift_window_records: int = 2000
    # Records a minute sent to review_topic (0: off; they carry texts out of the worker, so off by default), and
    # the top probability under which a record counts as low-confidence there.
    review_per_minute: float = 0.0
    review_confidence_below: float = 0.5
    # Dead-letter (reason uncovered_language) a text in a language the bundle's manifest does not list, instead of
    # scoring it; either way it is counted (streamer/quality/languages.py).
    dead_letter_uncovered_languages: bool = False

    # Worker
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_max: int = 256
    batch_within_seconds: float = 0.2
    max_text_bytes: int = 20_000
    # JSON size of an input record's fields besides `text`: the scored record echoes them and must stay
    # sendable, so a larger record is dead-lettered (extra_fields_too_large).
    max_extra_fields_bytes: int = 16_384
    window_seconds: int = 60
    long_window_seconds: int = 900
    allowed_lateness_seconds: int = 120
    topic_cap: int = 100
    topic_confidence_threshold: float = 0.6
    # Producer topics that get their own label (metrics, windows, /status, alert ids) besides the watchlist's and
    # the model's; any other producer topic is counted as `other`, the same on every worker.
    topic_allowlist: list[str] = dataclasses.field(default_factory=list)
    # {"ACME": ["acme", "$acme"]}: case-insensitive word match on the text.
    watchlist: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    alert_examples: int = 5
    # Privacy switch: when false, alerts carry no example texts at all.
    alert_examples_enabled: bool = True
    # /healthz fails when the worker is behind (lag > 0) and has made no progress for this long.
    liveness_stall_seconds: float = 60.0
    # After SIGTERM the worker exits (status 1) if the graceful stop has not finished by then.
    shutdown_timeout_seconds: float = 15.0
    # DEBUG, INFO, WARNING or ERROR (--debug wins); text: one line per record, json: one JSON object per line
    # (for Loki, Elasticsearch or a cloud logging agent).
    log_level: str = "INFO"
    log_format: str = "text"
    # Where a consumer group with no committed offset begins: earliest replays the input topic's history (and
    # republishes its alerts), latest takes only new records (a first install beside a long-lived topic).
    start_at: str = "earliest"
    # Faust standby copies of the tables per partition: a rebalance then hands a partition to a worker that already
    # holds its state instead of recovering it from the changelog. 0: none.
    table_standby_replicas: int = 0

    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)

    def __post_init__(self) -> None:
        positive = ("topic_partitions", "web_port", "batch_max", "max_text_bytes", "window_seconds",
                    "long_window_seconds", "topic_cap", "kafka_unreachable_exit_seconds", "shutdown_timeout_seconds",
                    "max_extra_fields_bytes")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r}: must be > 0, got {getattr(self, key)!r}")
        for key in ("kafka_fetch_max_wait_ms", "kafka_replication_factor", "kafka_min_insync_replicas"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r}: must be >= 0 (0: automatic), got {getattr(self, key)!r}")
        if self.kafka_replication_factor and self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ConfigError("config key 'kafka_min_insync_replicas': must not exceed kafka_replication_factor")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"config key 'log_level': must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"config key 'log_format': must be text or json, got {self.log_format!r}")
        if self.start_at not in ("earliest", "latest"):
            raise ConfigError(f"config key 'start_at': must be earliest or latest, got {self.start_at!r}")
        if self.table_standby_replicas < 0:
            raise ConfigError("config key 'table_standby_replicas': must be >= 0")
        if self.long_window_seconds % self.window_seconds:
            raise ConfigError("config key 'long_window_seconds': must be a multiple of window_seconds")
        if not 0.0 <= self.review_confidence_below <= 1.0:
            raise ConfigError("config key 'review_confidence_below': must be within 0..1")
        for key in ("model_reload_seconds", "model_shadow_records", "feedback_recent_ids", "review_per_minute"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r}: must be >= 0 (0: off), got {getattr(self, key)!r}")
        if self.drift_window_records < 100:
            raise ConfigError(f"config key 'drift_window_records': must be >= 100, got {self.drift_window_records!r}")
        if self.allowed_lateness_seconds < 0:
            raise ConfigError("config key 'allowed_lateness_seconds': must be >= 0")
        if not 0.0 <= self.topic_confidence_threshold <= 1.0:
            raise ConfigError("config key 'topic_confidence_threshold': must be within 0..1")
        if self.variant not in ("auto", "fp32", "fp16", "int8"):
            raise ConfigError(f"config key 'variant': must be auto, fp32, fp16 or int8, got {self.variant!r}")
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.kafka_security_protocol not in protocols:
            raise ConfigError(f"config key 'kafka_security_protocol': must be one of {', '.join(protocols)}")
        for name, terms in self.watchlist.items():
            if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
                raise ConfigError(f"config key 'watchlist': entry {name!r} must be a list of non-empty strings")


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, file, environment and flag overrides (flat key names).

    `config_file` defaults to `SENTIWATCH_CONFIG` when set. Raises ConfigError naming the key.
    """
    environ = os.environ if environ is None else environ
    fields = _flat_fields(Settings)
    values: dict[str, Any] = {}

    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG") or None
    if config_file:
        for key, raw in _read_config_file(Path(config_file)).items():
            if key not in fields:
                raise ConfigError(f"unknown config key {key!r} in {config_file}")
            values[key] = _coerce(key, raw, fields[key], from_text=False)

    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in fields:
            log.warning("ignoring unknown environment variable %s", name)
            continue
        values[key] = _coerce(name, raw, fields[key], from_text=True)

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}")
        values[key] = _coerce(key, raw, fields[key], from_text=isinstance(raw, str))

    return _build(Settings, values, prefix="")


def setting_names() -> list[str]:
    """Every flat key, for documentation and the Helm chart's schema."""
    return sorted(_flat_fields(Settings))


def _flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            flat.update(_flat_fields(hint, prefix=f"{prefix}{field.name}_"))
        else:
            flat[prefix + field.name] = hint
    return flat


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            kwargs[field.name] = _build(hint, values, prefix=f"{prefix}{field.name}_")
        elif prefix + field.name in values:
            kwargs[field.name] = values[prefix + field.name]
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config: {exc}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # each parser raises its own type
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys to values")
    # A nested section ([detector] in TOML) is accepted as well as flat `detector_*` keys.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "watchlist":
            for sub_key, sub_value in value.items():
                flat[f"{key}_{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def _coerce(key: str, raw: Any, hint: Any, from_text: bool) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError("expected a string")
            return str(raw)
        if origin in (dict, list) or isinstance(hint, types.GenericAlias):
            value = json.loads(raw) if from_text and isinstance(raw, str) else raw
            if not isinstance(value, origin):
                raise ValueError(f"expected a JSON {origin.__name__}")
            return value
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config key {key!r}: invalid value {str(raw)[:80]!r} ({exc})") from None
    return raw
