"""Kafka connection security from Settings: one place that turns settings into client options.

Credentials come only from the environment or mounted files (never flags), and nothing here puts a
secret into a repr or a log line: `KafkaSecurity.__repr__` leaves the password out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sentiwatch.config import Settings
from sentiwatch.errors import ConfigError, SentiwatchError

Result = TypeVar("Result")


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    sasl_mechanism: str
    username: str
    password: str = dataclasses.field(repr=False)
    cafile: str
    certfile: str
    keyfile: str

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


def security_from_settings(settings: Settings) -> KafkaSecurity:
    """Validate the kafka_* settings; a password file (a mounted Secret) wins over the variable."""
    password = settings.kafka_sasl_password
    if settings.kafka_sasl_password_file:
        try:
            password = Path(settings.kafka_sasl_password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"config key 'kafka_sasl_password_file': cannot read it ({exc.strerror})") from None
    security = KafkaSecurity(settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
                             settings.kafka_sasl_username, password, settings.kafka_ssl_cafile,
                             settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    if security.uses_sasl:
        if security.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ConfigError("config key 'kafka_sasl_mechanism': must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        if not security.username:
            raise ConfigError("config key 'kafka_sasl_username': required with SASL")
        if not security.password:
            raise ConfigError("config key 'kafka_sasl_password' (or kafka_sasl_password_file): required with SASL")
    for key in ("cafile", "certfile", "keyfile"):
        path = getattr(security, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"config key 'kafka_ssl_{key}': no such file {path}")
    return security


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    if not security.uses_ssl:
        return None
    context = ssl.create_default_context(cafile=security.cafile or None)
    if security.certfile:
        context.load_cert_chain(security.certfile, security.keyfile or None)
    return context


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/Consumer: bootstrap servers plus security."""
    security = security_from_settings(settings)
    options: dict[str, Any] = {"bootstrap_servers": settings.brokers.split(","),
                               "security_protocol": security.protocol}
    if security.uses_ssl:
        options["ssl_context"] = ssl_context(security)
    if security.uses_sasl:
        options.update(sasl_mechanism=security.sasl_mechanism, sasl_plain_username=security.username,
                       sasl_plain_password=security.password)
    return options


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for faust.App (None for PLAINTEXT)."""
    import faust

    security = security_from_settings(settings)
    context = ssl_context(security)
    if security.uses_sasl:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     ssl_context=context, mechanism=security.sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in settings.brokers.split(","))


# Tansu, the embedded broker, reports this cluster id unless told otherwise (streamer/kafka/broker.py leaves it).
EMBEDDED_CLUSTER_ID = "tansu_cluster"
# Tansu parks a fetch that finds no data for the whole wait and does not wake it when records arrive: on it a
# short wait is what keeps an idle worker's latency low (see streamer/kafka/faust_tuning.py).
EMBEDDED_FETCH_MAX_WAIT_MS = 100
# aiokafka's own default: on a real Kafka a fetch returns as soon as records arrive, the wait only bounds it.
LIBRARY_FETCH_MAX_WAIT_MS = 500
# Replicas beyond three buy little for these topics; three with min.insync.replicas 2 survive one broker lost.
MAX_AUTO_REPLICATION = 3


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the worker needs to know of the Kafka cluster to fill in its automatic settings."""

    cluster_id: str | None
    brokers: int

    @property
    def embedded(self) -> bool:
        return self.cluster_id == EMBEDDED_CLUSTER_ID


def for_cluster(settings: Settings, cluster: Cluster) -> Settings:
    """`settings` with the automatic (0) Kafka settings filled in for `cluster`; a replication factor the cluster
    cannot hold is a ConfigError naming the key."""
    replication = settings.kafka_replication_factor or min(MAX_AUTO_REPLICATION, cluster.brokers)
    if replication > cluster.brokers:
        raise ConfigError(f"config key 'kafka_replication_factor': {replication} replicas but the cluster at "
                          f"{settings.brokers} has {cluster.brokers} broker(s)")
    fetch_wait = settings.kafka_fetch_max_wait_ms or (EMBEDDED_FETCH_MAX_WAIT_MS if cluster.embedded
                                                      else LIBRARY_FETCH_MAX_WAIT_MS)
    return dataclasses.replace(settings, kafka_replication_factor=replication, kafka_fetch_max_wait_ms=fetch_wait,
                               kafka_min_insync_replicas=settings.kafka_min_insync_replicas or max(1, replication - 1))


def topic_configs(settings: Settings) -> dict[str, str]:
    """Configs of every topic the worker creates and of Faust's changelogs (`settings` after `for_cluster`; before
    it, 0 leaves the broker's default)."""
    insync = settings.kafka_min_insync_replicas
    return {"min.insync.replicas": str(insync)} if insync else {}


async def settings_for_cluster(settings: Settings) -> Settings:
    """`for_cluster` with the cluster the settings' brokers belong to."""
    return for_cluster(settings, await describe_cluster(settings))


async def describe_cluster(settings: Settings) -> Cluster:
    """The cluster's id and size (one short-lived admin client); raises SentiwatchError when unreachable."""
    return await _with_admin(settings, _describe)


async def _describe(admin: Any) -> Cluster:
    described = await admin.describe_cluster()
    return Cluster(described.get("cluster_id"), len(described.get("brokers") or ()))


async def ensure_topics(settings: Settings, names: list[str]) -> dict[str, int]:
    """Create the topics that do not exist yet (settings.topic_partitions each, replicated as `for_cluster` says);
    existing ones are left alone. Returns each topic's partition count.

    Done before anything subscribes: a consumer that subscribes to a missing topic only notices it at
    the next metadata refresh (minutes), and records keyed by topic need a fixed partition count.
    Raises SentiwatchError naming the brokers when they cannot be reached within kafka_connect_timeout_seconds.
    """
    async def create_missing(admin: Any) -> dict[str, int]:
        from aiokafka.admin import NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        resolved = for_cluster(settings, await _describe(admin))
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(name, resolved.topic_partitions, resolved.kafka_replication_factor,
                                                    topic_configs=topic_configs(resolved)) for name in missing])
            except TopicAlreadyExistsError:
                pass  # a peer worker created it in between
        described = await admin.describe_topics(names)
        return {topic["topic"]: len(topic["partitions"]) for topic in described}

    return await _with_admin(settings, create_missing)


async def _with_admin(settings: Settings, use: Callable[[Any], Awaitable[Result]]) -> Result:
    """`use(admin)` with a fresh admin client, retried until kafka_connect_timeout_seconds."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    options = aiokafka_options(settings)
    # aiokafka logs every refused connection at ERROR; while retrying, the one line at the end says it.
    quiet = logging.getLogger("aiokafka")
    previous_level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        deadline = asyncio.get_running_loop().time() + settings.kafka_connect_timeout_seconds
        while True:
            admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
            try:
                await admin.start()
                return await use(admin)
            except (KafkaError, OSError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise SentiwatchError(f"cannot reach Kafka at {settings.brokers} ({type(exc).__name__})") from None
                await asyncio.sleep(1.0)
            finally:
                await admin.close()
    finally:
        quiet.setLevel(previous_level)
