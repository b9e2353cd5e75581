"""The deployment files (deploy/): every Kubernetes manifest valid against the Kubernetes
schemas, strictly (kubernetes-validate ships them: offline), listed by the kustomization and
consistent with the service (probe routes, port, settings names and values); the compose
stack's structure (services, images, commands, dependencies, the load balancer's servers),
and its HAProxy configuration checked by ``haproxy -c`` when HAProxy is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBE = DEPLOY / "kubernetes"
#: The Kubernetes version the manifests are checked against (schemas in kubernetes-validate).
KUBE_VERSION = "1.30.0"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _resources() -> dict[str, dict[str, Any]]:
    """Kind -> the resource, over every manifest but the kustomization."""
    return {d["kind"]: d for p in sorted(KUBE.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in _docs(p)}


@pytest.mark.parametrize("path", sorted(p.name for p in KUBE.glob("*.yaml")
                                        if p.name != "kustomization.yaml"))
def test_every_manifest_is_valid_kubernetes(path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in _docs(KUBE / path):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)  # raises if not


def test_the_kustomization_lists_every_manifest():
    (k,) = _docs(KUBE / "kustomization.yaml")
    assert k["kind"] == "Kustomization"
    assert sorted(k["resources"]) == sorted(p.name for p in KUBE.glob("*.yaml")
                                            if p.name != "kustomization.yaml")


def test_the_deployment_probes_scales_and_configures_the_service():
    r = _resources()
    assert set(r) >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"}
    pod = r["Deployment"]["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    config = r["ConfigMap"]["data"]
    assert c["ports"][0]["containerPort"] == int(config["PHOTOGRADE_PORT"])
    assert pod["metadata"]["labels"].items() >= r["Service"]["spec"]["selector"].items()
    hpa = r["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == r["Deployment"]["metadata"]["name"]
    refs = {e[k]["name"] for e in c["envFrom"] for k in e}
    assert refs == {r["ConfigMap"]["metadata"]["name"], r["Secret"]["metadata"]["name"]}
    secret = r["Secret"]["stringData"]
    assert secret["PHOTOGRADE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert config["PHOTOGRADE_PHOTO_STORE"].startswith("s3://")


def _check_settings(env: dict[str, str], monkeypatch) -> Settings:
    """``env``'s PHOTOGRADE_* names are settings and their values load."""
    fields = {f"PHOTOGRADE_{n.upper()}" for n in Settings.model_fields}
    ours = {k for k in env if k.startswith("PHOTOGRADE_")}
    assert ours <= fields, ours - fields
    for k in ours:
        monkeypatch.setenv(k, str(env[k]))
    return Settings()


def test_the_kubernetes_settings_are_the_services(monkeypatch):
    r = _resources()
    s = _check_settings(r["ConfigMap"]["data"] | r["Secret"]["stringData"], monkeypatch)
    assert s.port == 8000 and s.trusted_proxies and s.database_url.startswith("postgresql")


def test_the_compose_stack_has_two_replicas_behind_the_load_balancer(monkeypatch):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = sorted(n for n in services if re.fullmatch(r"photograde-\d+", n))
    assert replicas == ["photograde-1", "photograde-2"]
    assert {"postgres", "redis", "s3", "lb", "migrate"} <= set(services)
    for name, svc in services.items():
        assert svc.get("image") and (svc.get("command") or svc.get("entrypoint")), name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on {dep}"
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            assert src in compose["volumes"] or (DEPLOY / src).is_file(), f"{name}: {src}"
    env = services["photograde-1"]["environment"]
    assert services["photograde-2"]["environment"] == env == services["migrate"]["environment"]
    _check_settings(env, monkeypatch)
    for key in ("AWS_ENDPOINT_URL", "PHOTOGRADE_REDIS_URL", "PHOTOGRADE_DATABASE_URL"):
        host = re.search(r"//(?:[^@/]*@)?([^:/]+)", env[key])
        assert host and host.group(1) in services, key  # a service of the stack
    bucket = env["PHOTOGRADE_PHOTO_STORE"].removeprefix("s3://").split("/")[0]
    assert f"-name {bucket}" in services["s3-bucket"]["command"][0]
    haproxy = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    assert re.findall(r"^\s*server (\S+) (\S+):8000", haproxy, re.M) == [(n, n) for n in replicas]
    assert "httpchk GET /readyz" in haproxy


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed")
def test_haproxy_accepts_the_load_balancer_configuration():
    r = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "compose" / "haproxy.cfg")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
