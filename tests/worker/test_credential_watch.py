"""A rotated Kafka credential (a mounted Secret the kubelet updates in place) is noticed by content."""

from __future__ import annotations

import os
from pathlib import Path

from sentiwatch.config import load_settings
from sentiwatch.streamer.kafka.credential_watch import CredentialWatch


def kubelet_secret(folder: Path, files: dict[str, str], version: str) -> None:
    """What the kubelet does for a Secret volume: files in a timestamped folder, reached through a ..data link that
    is swapped atomically on update."""
    data = folder / f"..{version}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def test_a_rotated_password_and_a_renewed_ca_are_noticed(tmp_path: Path) -> None:
    sasl, tls = tmp_path / "sasl", tmp_path / "tls"
    sasl.mkdir()
    tls.mkdir()
    kubelet_secret(sasl, {"password": "s3cret"}, "2026_11_01")
    kubelet_secret(tls, {"ca.crt": "CA-1"}, "2026_11_01")
    settings = load_settings(environ={"SENTIWATCH_KAFKA_SASL_PASSWORD_FILE": str(sasl / "password"),
                                      "SENTIWATCH_KAFKA_SSL_CAFILE": str(tls / "ca.crt")})
    watch = CredentialWatch.from_settings(settings)
    assert watch.changed() == []
    kubelet_secret(sasl, {"password": "s3cret"}, "2026_11_02")  # re-synced, same content: nothing to do
    assert watch.changed() == []
    kubelet_secret(sasl, {"password": "n3w"}, "2026_11_03")
    kubelet_secret(tls, {"ca.crt": "CA-2"}, "2026_11_03")
    assert watch.changed() == [str(sasl / "password"), str(tls / "ca.crt")]


def test_a_file_missing_for_a_moment_is_not_a_change(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret")
    watch = CredentialWatch.of([password])
    password.unlink()
    assert watch.changed() == []
    password.write_text("s3cret")
    assert watch.changed() == []


def test_no_credential_files_nothing_to_watch() -> None:
    assert CredentialWatch.from_settings(load_settings(environ={})).paths == ()
