"""deploy/kubernetes as shipped: valid against the Kubernetes API schemas, hardened, probed
where the processes listen, scraped where they serve metrics, and configured so that
`usersync check-config` passes with the Secret template's values."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.loader import load_settings
from tests.deploy_support import (
    KUBERNETES,
    check_config,
    secret_template_env,
    tool,
    yaml_documents,
)

K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest version the manifests target (the PodDisruptionBudget, probe and seccomp
fields they use are all GA there), and the newest kubernetes-validate ships."""
NOT_APPLIED = {"kustomization.yaml", "monitoring.yaml", "secret.example.yaml"}
"""Files kustomization.yaml leaves out: itself, the Prometheus Operator's CRDs (a cluster
without the operator refuses them), and the Secret template operators fill in."""


def resources() -> list[dict[str, Any]]:
    """Every object kustomization.yaml applies, plus the Secret template."""
    (kustomization,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    names = [*kustomization["resources"], "secret.example.yaml"]
    return [doc for name in names for doc in yaml_documents(KUBERNETES / name)]


def named(kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name)


def workloads() -> Iterator[dict[str, Any]]:
    return (r for r in resources() if r["kind"] in ("Deployment", "StatefulSet"))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_kustomization_applies_every_other_manifest() -> None:
    """kustomization.yaml lists each manifest of the folder but the ones it must leave out."""
    (kustomization,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    present = {path.name for path in KUBERNETES.glob("*.yaml")}
    assert sorted(kustomization["resources"]) == sorted(present - NOT_APPLIED)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_api(version: str) -> None:
    """Every object validates strictly (no unknown field) against the API schema of the
    version, and a misspelt field is refused, so the check can fail."""
    for resource in resources():
        kubernetes_validate.validate(resource, version, strict=True)
    broken = copy.deepcopy(named("Deployment", "usersync-gateway"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_pods_run_hardened_with_probes_and_resources() -> None:
    """Each pod: non-root, RuntimeDefault seccomp, no service account token; each container:
    no privilege escalation, read-only root, no capabilities, requests and limits, readiness
    and liveness probes; every writable mount an emptyDir or the StatefulSet's claim."""
    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        where = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        writable = claims | {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert container["readinessProbe"] and container["livenessProbe"], where
            for mount in container["volumeMounts"]:
                assert mount.get("readOnly") or mount["name"] in writable, (where, mount)


def test_every_workload_has_one_disruption_budget() -> None:
    """Each Deployment and StatefulSet is covered by exactly one PodDisruptionBudget."""
    budgets = [r for r in resources() if r["kind"] == "PodDisruptionBudget"]
    for workload in workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, workload["metadata"]["name"]


def usersync_settings(tmp_path: Path) -> Any:
    (config_map,) = [r for r in resources() if r["metadata"]["name"] == "usersync-config"]
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"], encoding="utf-8")
    return path, load_settings(path, secret_template_env())


def container(deployment: str) -> dict[str, Any]:
    spec = named("Deployment", deployment)["spec"]["template"]["spec"]
    return dict(spec["containers"][0])


def test_config_map_checks_with_the_secret_template(tmp_path: Path) -> None:
    """The ConfigMap's config passes `usersync check-config` with the Secret template's
    values, and every variable the pods need comes from that one Secret."""
    path, _ = usersync_settings(tmp_path)
    result = check_config(path, secret_template_env())
    assert result.returncode == 0, result.stderr
    for name in ("usersync-gateway", "usersync-worker"):
        assert container(name)["envFrom"] == [{"secretRef": {"name": "usersync-secrets"}}]


def test_gateway_leaves_the_endpoints_before_sigterm(tmp_path: Path) -> None:
    """The gateway's probes and Service use the configured port; its preStop sleep and the
    5 s of open requests fit in the termination grace period; rollouts never go below the
    replica count."""
    _, settings = usersync_settings(tmp_path)
    gateway = container("usersync-gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports["http"] == settings.gateway.port and settings.gateway.host == "0.0.0.0"
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    sleep = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 5
    deployment = named("Deployment", "usersync-gateway")
    assert (
        int(sleep[1]) + 5 < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = named("Service", "usersync-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_is_probed_and_scraped_on_its_metrics_port(tmp_path: Path) -> None:
    """The worker's container port is worker.metrics_port, served on every address of the
    pod; readiness asks /readyz, liveness /healthz, Prometheus /metrics there."""
    _, settings = usersync_settings(tmp_path)
    worker = container("usersync-worker")
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == settings.worker.metrics_port > 0
    assert settings.worker.metrics_host == "0.0.0.0"
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_scrape_configuration_points_at_served_ports(tmp_path: Path) -> None:
    """Each pod's prometheus.io annotations name a port it serves /metrics on; the
    ServiceMonitor and PodMonitor select those pods and name ports that exist."""
    _, settings = usersync_settings(tmp_path)
    served = {
        "usersync-gateway": settings.gateway.port,
        "usersync-worker": settings.worker.metrics_port,
    }
    for name, port in served.items():
        template = named("Deployment", name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (
            str(port),
            "/metrics",
        )
    monitors = {m["kind"]: m for m in yaml_documents(KUBERNETES / "monitoring.yaml")}
    service = named("Service", "usersync-gateway")
    service_monitor = monitors["ServiceMonitor"]["spec"]
    assert selects(service_monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service_monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    pod_monitor = monitors["PodMonitor"]["spec"]
    worker_labels = named("Deployment", "usersync-worker")["spec"]["template"]["metadata"]["labels"]
    assert selects(pod_monitor["selector"]["matchLabels"], worker_labels)
    worker_ports = {p["name"] for p in container("usersync-worker")["ports"]}
    assert pod_monitor["podMetricsEndpoints"][0]["port"] in worker_ports


def test_redis_sentinel_topology(tmp_path: Path) -> None:
    """A primary and two replicas with AOF, noeviction and the Secret's password; three
    Sentinels whose quorum is the budget's minimum; usersync follows them (redis.sentinel:
    every Sentinel, their master name, the data nodes' password) and waits for a replica's
    acknowledgement; the start scripts pass shellcheck."""
    redis = named("StatefulSet", "usersync-redis")
    sentinel = named("StatefulSet", "usersync-sentinel")
    assert (redis["spec"]["replicas"], sentinel["spec"]["replicas"]) == (3, 3)
    scripts = named("ConfigMap", "usersync-redis-scripts")["data"]
    for line in (
        "appendonly yes",
        "maxmemory-policy noeviction",
        "requirepass ${REDIS_PASSWORD}",
        "min-replicas-to-write 1",  # an isolated primary stops taking writes
    ):
        assert line in scripts["redis.sh"]
    quorum = re.search(r"sentinel monitor usersync \S+ 6379 (\d+)", scripts["sentinel.sh"])
    assert quorum and int(quorum.group(1)) == 2
    assert named("PodDisruptionBudget", "usersync-sentinel")["spec"]["minAvailable"] == 2
    _, settings = usersync_settings(tmp_path)
    headless = named("Service", "usersync-sentinel-headless")["metadata"]["name"]
    conf = settings.redis.sentinel
    assert settings.redis.url is None and conf is not None
    assert conf.addresses == [f"usersync-sentinel-{n}.{headless}:26379" for n in range(3)]
    assert conf.master == "usersync"
    assert conf.password is not None
    assert conf.password.get_secret_value() == secret_template_env()["REDIS_PASSWORD"]
    assert settings.redis.min_replicas_ack == 1
    for workload in (redis, sentinel):
        (env,) = workload["spec"]["template"]["spec"]["containers"][0]["env"][:1]
        assert env["valueFrom"]["secretKeyRef"] == {
            "name": "usersync-secrets",
            "key": "REDIS_PASSWORD",
        }
    for name, text in scripts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        result = subprocess.run(
            [tool("shellcheck"), "--shell=sh", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout


def test_monitoring_objects_are_well_formed() -> None:
    """monitoring.yaml holds the operator's two kinds, named, with label selectors."""
    kinds = {}
    for monitor in yaml.safe_load_all((KUBERNETES / "monitoring.yaml").read_text()):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["name"] and monitor["spec"]["selector"]["matchLabels"]
        kinds[monitor["kind"]] = monitor
    assert sorted(kinds) == ["PodMonitor", "ServiceMonitor"]
