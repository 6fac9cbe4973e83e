"""The deploy files, checked by the tools that read them (no Docker engine or cluster here).

`deploy/check` is a small Go program: the Compose file is loaded by compose-go,
the loader Docker Compose itself uses (the Compose JSON schema, interpolation,
anchors), and each overlay is built by kustomize's own library and decoded
strictly into the Kubernetes API types, PrometheusRule included, so an
unknown or misplaced field fails. What they read comes back as JSON for the assertions
below.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = ("staging", "production")
SERVICES = {
    "kafka", "kafka-setup", "keeper", "clickhouse", "migrate", "validator", "dashboard",
    "gateway", "prometheus", "alertmanager", "grafana",
}  # fmt: skip


@pytest.fixture(scope="module")
def check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checker, built from deploy/check (its modules from the Go module proxy)."""
    go = shutil.which("go")
    assert go, "Go is needed to check the deploy files (deploy/check)"
    binary = tmp_path_factory.mktemp("check") / "check"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=DEPLOY / "check", capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return binary


def run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )


def objects(check: Path, overlay: str) -> list[dict[str, Any]]:
    built = run([str(check), "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)])
    assert built.returncode == 0, built.stderr
    return json.loads(built.stdout)


def named(found: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in found if o["kind"] == kind}


def test_the_compose_file_loads_as_compose_reads_it(check: Path) -> None:
    loaded = run([str(check), "compose", str(DEPLOY / "compose" / "compose.yaml")])
    assert loaded.returncode == 0, loaded.stderr
    project = json.loads(loaded.stdout)
    services = project["services"]
    assert set(services) == SERVICES
    kafka = " ".join(services["kafka"]["command"])
    assert "kafka-storage.sh format" in kafka and "--add-scram" in kafka
    for name in ("validator", "gateway", "kafka-setup"):
        environment = services[name]["environment"]
        assert environment["FACEAUDIT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert not any("PASSWORD" in key and not key.endswith("_FILE") for key in environment)
    assert services["validator"]["deploy"]["replicas"] >= 2
    for name, service in services.items():
        for secret in service.get("secrets", []):
            assert secret["source"] in project["secrets"], (name, secret)
    assert all("/secrets/" in s["file"] for s in project["secrets"].values())


def test_the_compose_file_fails_the_check_when_it_breaks_the_schema(
    check: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  validator:\n    image: faceaudit\n    replicas: lots\n")
    loaded = run([str(check), "compose", str(broken)])
    assert loaded.returncode == 1 and "replicas" in loaded.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_builds_into_valid_kubernetes_objects(check: Path, overlay: str) -> None:
    found = objects(check, overlay)
    kinds = {o["kind"] for o in found}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PrometheusRule"} <= kinds  # fmt: skip
    assert "Secret" not in kinds, "secrets are referenced, never shipped"
    deployments = named(found, "Deployment")
    assert set(deployments) == {"faceaudit-validator", "faceaudit-dashboard", "faceaudit-gateway"}
    for name in ("faceaudit-dashboard", "faceaudit-gateway"):
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/healthz", (name, probe)
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                if any(word in variable["name"] for word in ("PASSWORD", "CLICKHOUSE", "TOKEN")):
                    assert "value" not in variable or variable["name"].endswith("_FILE"), variable
    [config] = named(found, "ConfigMap").values()
    [hpa] = named(found, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "faceaudit-validator"
    assert hpa["spec"]["maxReplicas"] <= int(config["data"]["events-partitions"])
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "faceaudit_consumer_lag"


def test_a_misplaced_field_fails_the_kubernetes_check(check: Path) -> None:
    manifest = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec: {replica: 2, selector: {matchLabels: {a: b}}, template: {metadata: "
        "{labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}\n"
    )
    decoded = run([str(check), "kube"], manifest)
    assert decoded.returncode == 1 and 'unknown field "spec.replica"' in decoded.stderr


def test_the_prometheus_rule_is_the_alert_rule_file(check: Path) -> None:
    generated = run([str(check), "prometheusrule", str(DEPLOY / "prometheus" / "alerts.yml")])
    assert generated.returncode == 0, generated.stderr
    committed = (DEPLOY / "kubernetes" / "base" / "prometheusrule.yaml").read_text()
    assert committed == generated.stdout, "stale: run make deploy-rules"
