"""Monitoring, checked offline with the real tools: every metric the alerts, the dashboard and the runbook name
is one the services export (read from the metrics modules themselves, not from a list kept here), promtool
checks and unit-tests the alerts and accepts each service's exposition.
The tools are installed on first use into .run/tools/ (tests/fixtures/deploy_toolchain.py); a missing tool fails.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from tests.fixtures import deploy_toolchain as tools
from tests.fixtures.deployment import DEPLOY, ROOT, SERVICES, run

METRICS_MODULES = ("services.ingest.metrics", "services.aggregate.metrics", "services.query.metrics",
                   "shared.observability")
# Labels Prometheus or the ServiceMonitor put on every scraped series, besides the metric's own.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Series the alerts use that other exporters provide, with their labels.
EXTERNAL_SERIES = {"up": set(), "kube_job_status_failed": {"job_name", "condition", "reason"}}


# ---- alerts, dashboard, metrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    series: dict[str, set[str]]  # every series name a service can export -> its label names
    families: set[str]  # d06 metric names as documented: counters with _total, histograms by their base name


@pytest.fixture(scope="session")
def exported() -> Exported:
    """Read from the metrics modules themselves: every class there that takes a registry is instantiated."""
    series: dict[str, set[str]] = {}
    families: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"), "info": ("_info",), "unknown": ("",),
    }
    observability = importlib.import_module("shared.observability")
    registries = [observability.new_registry()]
    registries[0].register(observability.PoolCollector(FastAPI()))  # installed by install_observability
    for module_name in METRICS_MODULES:
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            params = list(inspect.signature(cls.__init__).parameters)
            if cls.__module__ == module_name and params == ["self", "registry"]:
                registry = CollectorRegistry()
                factory: Any = cls
                holder = factory(registry)
                registries.append(registry)
                for metric in vars(holder).values():
                    if isinstance(metric, MetricWrapperBase):
                        kind = str(metric._type)
                        families.add(metric._name + ("_total" if kind == "counter" else ""))
                        for suffix in suffixes[kind]:
                            labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                            series.setdefault(metric._name + suffix, set()).update(labels)
    for registry in registries:  # collectors that are not wrappers: process, platform, gc, WeightedHistogram
        for family in registry.collect():
            if family.name.startswith("d06_"):
                families.add(family.name + ("_total" if family.type == "counter" else ""))
            for suffix in suffixes[family.type]:
                series.setdefault(family.name + suffix, set()).update({"le"} if suffix == "_bucket" else set())
    assert "d06_aggregate_freshness_seconds" in families, "metrics modules not found"
    return Exported(series, families)


def test_operations_doc_lists_every_metric(exported: Exported) -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    listed = set(re.findall(r"^\| `(d06_[a-z0-9_]+)` \|", doc, flags=re.M))
    assert exported.families == listed, (
        f"docs/operations.md metrics table: missing {sorted(exported.families - listed)}, "
        f"stale {sorted(listed - exported.families)}"
    )


def check_expression(expr: str, series: dict[str, set[str]], where: str) -> None:
    used = set(re.findall(r"\b((?:d06|process)_[a-z0-9_]+)\b", expr))
    missing = used - set(series)
    assert not missing, f"{where}: {sorted(missing)} not exported by any service"
    known = set(TARGET_LABELS)
    for name in used:
        known |= series[name]
    for name, labels in EXTERNAL_SERIES.items():
        if re.search(rf"\b{name}\b", expr):
            known |= labels
    selectors = re.findall(r"\b(?:d06|process)_[a-z0-9_]+\{([^}]*)\}", expr)
    labels = {m for s in selectors for m in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", s)}
    labels |= {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
               for label in group.split(",") if label.strip()}
    unknown = labels - known
    assert not unknown, f"{where}: labels {sorted(unknown)} are on none of {sorted(used)}"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_use_only_exported_metrics_and_labels(exported: Exported) -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        check_expression(rule["expr"], exported.series, rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert f'<a id="{anchor}"></a>' in (ROOT / "docs" / "operations.md").read_text(), f"no runbook for {anchor}"
    for needed in ("d06_ingest_outbox_", "d06_aggregate_consumer_lag", "d06_aggregate_freshness_seconds",
                   "d06_aggregate_dead_letters_total", 'status=~"5.."'):
        assert any(needed in rule["expr"] for rule in alert_rules()), f"no alert on {needed}"


def test_dashboard_uses_only_exported_metrics(exported: Exported) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "d06.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for expr in exprs:
        check_expression(expr.replace("$__rate_interval", "5m"), exported.series, expr)
    text = " ".join(exprs)
    for needed in ("d06_http_requests_total", "d06_http_request_duration_seconds_bucket",
                   "d06_aggregate_freshness_seconds_bucket", "max by (partition) (d06_aggregate_consumer_lag)",
                   "d06_ingest_outbox_backlog_events", "d06_ingest_outbox_oldest_age_seconds"):
        assert needed in text, f"the dashboard shows no {needed}"


def test_prometheus_rule_object_is_generated_from_alerts() -> None:
    spec = importlib.util.spec_from_file_location("prometheusrule", DEPLOY / "tools" / "prometheusrule.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python deploy/tools/prometheusrule.py"


def test_promtool_checks_and_unit_tests_the_alerts() -> None:
    promtool = str(tools.promtool())
    checked = run([promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run([promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", (DEPLOY / "prometheus" / "alerts_test.yml").read_text()))
    assert tested_alerts == {rule["alert"] for rule in alert_rules()}, "every alert has a promtool test"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_promtool_accepts_each_services_exposition(service: str) -> None:
    """What /metrics would show at start-up, assembled as the app does, passes `promtool check metrics`."""
    observability = importlib.import_module("shared.observability")
    registry = observability.new_registry()
    observability.HttpMetrics(registry)
    module_name = f"services.{service}.metrics"
    module = importlib.import_module(module_name)
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module_name and list(inspect.signature(cls.__init__).parameters) == ["self", "registry"]:
            factory: Any = cls
            factory(registry)
    text = generate_latest(registry).decode()
    result = subprocess.run([str(tools.promtool()), "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
