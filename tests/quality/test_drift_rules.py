"""ModelDriftSuspected with the real promtool: the rule's unit tests (deploy/prometheus/tests/drift_rules_test.yml)
pass, the gauges it reads are the ones the worker exports, and its runbook section exists."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from sentiwatch.streamer.quality.drift import DriftMonitor
from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"


def drift_rule() -> dict:
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text(encoding="utf-8"))["groups"]
    return next(rule for group in groups for rule in group["rules"] if rule.get("alert") == "ModelDriftSuspected")


def test_drift_rule_unit_tests_pass():
    assert shutil.which("promtool"), "promtool missing: run `make install` (Debian package prometheus)"
    result = subprocess.run(["promtool", "test", "rules", "deploy/prometheus/tests/drift_rules_test.yml"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_reads_what_the_worker_exports():
    exported = generate_latest(_registry_with_monitor()).decode()
    names = set(re.findall(r"\bsentiwatch_[a-z_]+", drift_rule()["expr"]))
    assert names and all(f"\n{name} " in exported for name in names), names


def test_runbook_section():
    runbook = (PROMETHEUS_DIR / "RUNBOOK.md").read_text(encoding="utf-8")
    assert "\n## ModelDriftSuspected\n" in runbook
    assert drift_rule()["annotations"]["runbook_url"].endswith("#modeldriftsuspected")


def _registry_with_monitor() -> CollectorRegistry:
    registry = CollectorRegistry()
    DriftMonitor(100, registry)
    return registry
