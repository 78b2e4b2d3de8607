import signal
import subprocess
import sys
import time

from sentiwatch.streamer.kafka.broker import free_port, port_open
from tests.streaming_helpers import REPO_ROOT


def test_broker_command_runs_in_foreground_and_stops_on_sigterm():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sentiwatch.cli", "broker", "--port", str(port)],
                               cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_open("127.0.0.1", port)

        busy = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "broker", "--port", str(port)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines() == [
            f"sentiwatch broker: error: cannot start the embedded broker: 127.0.0.1:{port} is already in use"]

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        # It returns only once the broker has exited, so the port is free for the next one at once.
        assert not port_open("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
