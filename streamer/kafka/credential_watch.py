"""Notice when the mounted Kafka credentials change (a rotated password, a renewed certificate or CA).

A Secret mounted as a volume (not with subPath) is updated in place by the kubelet: Strimzi renews its cluster CA
and client certificates, and a changed SCRAM password lands in the same file. Faust and aiokafka read credentials
and build their TLS context once, so a worker would keep the old ones until a reconnect fails. The worker looks at
the files' contents on a timer instead and, when they change, stops gracefully (offsets committed) so that its
supervisor starts it again with the new ones: one short, orderly rebalance instead of failed reconnects.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

from sentiwatch.config import Settings

# How often the worker looks. The kubelet itself syncs mounted Secrets only every minute or so, so looking more
# often gains nothing; less often delays the switch to a renewed certificate.
CHECK_SECONDS = 10.0


@dataclasses.dataclass
class CredentialWatch:
    """The credential files and their content hashes at start; `changed()` names the files that differ now."""

    paths: tuple[Path, ...]
    hashes: dict[Path, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialWatch:
        files = (settings.kafka_sasl_password_file, settings.kafka_ssl_cafile, settings.kafka_ssl_certfile,
                 settings.kafka_ssl_keyfile)
        return cls.of(Path(f) for f in files if f)

    @classmethod
    def of(cls, paths: Iterable[Path]) -> CredentialWatch:
        watch = cls(tuple(paths))
        watch.hashes = {path: _digest(path) for path in watch.paths}
        return watch

    def changed(self) -> list[str]:
        """Files whose content differs from the start (a file that cannot be read now counts as unchanged: the
        kubelet swaps a symbolic link while it updates, and a half-written moment must not stop the worker)."""
        changed = []
        for path in self.paths:
            now = _digest(path)
            if now and now != self.hashes[path]:
                changed.append(str(path))
        return changed


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
