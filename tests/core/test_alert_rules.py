"""The Prometheus alerting rules in deploy/prometheus/: valid for promtool, firing and staying quiet
as their unit tests say, and written against metric names /metrics really exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from apps.core.metrics import render_metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
# Skipped where promtool is missing, except in CI (.ci/run installs it): there it must run.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and os.environ.get("CI") != "true",
                                    reason="promtool (Debian's prometheus package) is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool not found: apt-get install prometheus"
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_rules_pass_promtool_check():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


@needs_promtool
def test_rules_fire_and_stay_quiet_as_their_unit_tests_say():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing():
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules}


@pytest.mark.django_db
def test_rules_use_metric_names_that_metrics_exports():
    parsed = list(text_string_to_metric_families(render_metrics().decode()))
    families = {f.name: f.type for f in parsed}
    # A failing collector leaves its families out; every one must answer for the check to mean anything.
    up = {s.labels["collector"]: s.value for f in parsed if f.name == "casehub_metrics_collector_up"
          for s in f.samples}
    assert up and set(up.values()) == {1.0}, up
    exprs = " ".join(rule["expr"] for rule in
                     yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"][0]["rules"])
    used = set(re.findall(r"\bcasehub_[a-z0-9_]+", exprs))
    assert used, "the rules name no Casehub metric"

    def exported(name: str) -> bool:
        histogram = families.get(name.removesuffix("_bucket")) in ("histogram", "gaugehistogram")
        return name in families or histogram

    assert sorted(name for name in used if not exported(name)) == []
