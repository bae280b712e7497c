"""docs/deploy without a cluster: every manifest validates offline, and the manifests, the
Containerfile and the code agree (capabilities, mounts, probes, commands).

The pod itself is emulated, with the manifest's capabilities and mounts, by
tests/e2e/test_pod.py.
"""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import pingkiller
from pingkiller.bpf import BpfError
from pingkiller.exporter.server import make_app, probes_only
from pingkiller.store.bpffs import BPFFS
from pingkiller.store.layout import DEFAULT_ROOT
from pingkiller.system import capabilities

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
DAEMONSET = DEPLOY / "daemonset.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
# yamllint's defaults, with lines up to 100 characters (the comments explain the choices)
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 100}}}"


def documents(path: Path = DAEMONSET) -> dict[str, dict[str, Any]]:
    """The manifest's objects by kind (each kind once)."""
    found = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    kinds = {doc["kind"]: doc for doc in found}
    assert len(kinds) == len(found), "one object of each kind"
    return kinds


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = documents()["DaemonSet"]["spec"]["template"]["spec"]
    return spec


def containers() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec()["containers"]}


def test_there_are_manifests() -> None:
    assert DAEMONSET in MANIFESTS


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_offline_with_kubernetes_validate(manifest: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="install the test extras (kubernetes-validate)")
    for version in ([], ["-k", "1.28"]):  # the newest schema it knows, and an old cluster
        result = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *version,
             str(manifest)], capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_yamllint(manifest: Path) -> None:
    pytest.importorskip("yamllint", reason="install the test extras (yamllint)")
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-d", YAMLLINT_CONFIG, str(manifest)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_what_a_cluster_would() -> None:
    """The validation above can fail: a misspelt field is caught."""
    pytest.importorskip("kubernetes_validate", reason="install the test extras (kubernetes-validate)")
    bad = DAEMONSET.read_text().replace("readinessProbe:", "readinesProbe:")
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-"],
        input=bad, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_namespace_comes_first_and_holds_everything() -> None:
    found = [doc for doc in yaml.safe_load_all(DAEMONSET.read_text()) if doc]
    assert found[0]["kind"] == "Namespace"  # `kubectl apply -f` creates it before the rest
    namespace = found[0]["metadata"]["name"]
    assert found[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for doc in found[1:]:
        assert doc["metadata"]["namespace"] == namespace, doc["kind"]


def test_daemonset_names_the_capabilities_and_paths_of_the_code() -> None:
    kinds = documents()
    assert set(kinds) == {"Namespace", "ConfigMap", "DaemonSet", "NetworkPolicy"}
    policy_text = kinds["ConfigMap"]["data"]["policy.toml"]
    assert pingkiller.parse_policy_file(policy_text).interfaces  # the example policy is valid
    pod = pod_spec()
    assert pod["hostNetwork"] is True
    applier, broker, server = (containers()[name] for name in
                               ("pingkiller", "exporter-broker", "exporter"))
    assert applier["command"] == ["pingkiller", "apply", "--watch", "-f",
                                  "/etc/pingkiller/policy.toml"]
    assert server["command"][:2] == ["pingkiller", "exporter"]
    assert broker["command"][:2] == ["pingkiller", "exporter-broker"]
    # the applier loads, attaches and changes (all three); the broker only reads; the
    # server that listens on the node's address has no capability and is not root
    writes = {f"CAP_{c}" for c in applier["securityContext"]["capabilities"]["add"]}
    reads = {f"CAP_{c}" for c in broker["securityContext"]["capabilities"]["add"]}
    assert writes == set(capabilities.missing(0, load=True)) == {"CAP_BPF", "CAP_NET_ADMIN",
                                                                 "CAP_PERFMON"}
    assert reads == set(capabilities.missing(0, load=False, write=False)) == {"CAP_BPF"}
    assert "add" not in server["securityContext"]["capabilities"]
    assert server["securityContext"]["runAsUser"] == 65534
    assert server["securityContext"]["runAsNonRoot"] is True
    text = (REPO / "docs" / "security.md").read_text()
    assert all(cap in text for cap in writes | reads)
    for container in (applier, broker, server):
        security = container["securityContext"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["privileged"] is False
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}

    def host_mounts(container: dict[str, Any]) -> dict[str, bool]:
        return {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]
                if "hostPath" in volumes[m["name"]]
                and volumes[m["name"]]["hostPath"]["path"] == m["mountPath"]}

    assert host_mounts(applier) == {str(BPFFS): False}  # only the applier writes pins
    assert host_mounts(broker) == {str(DEFAULT_ROOT): True}  # the pin root, read-only
    assert host_mounts(server) == {}  # no bpffs at all
    assert DEFAULT_ROOT.parent == BPFFS  # the pin root lives on that mount
    config = {m["mountPath"]: m["name"] for m in applier["volumeMounts"]}["/etc/pingkiller"]
    assert volumes[config]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    # the two halves meet on a socket in a volume of the pod's own, group 65534
    socket = broker["command"][broker["command"].index("--socket") + 1]
    assert server["command"][server["command"].index("--broker") + 1] == socket
    broker_mounts = {m["name"]: m["mountPath"] for m in broker["volumeMounts"]}
    server_mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    ((name, path),) = broker_mounts.items() & server_mounts.items()
    assert "emptyDir" in volumes[name] and socket.startswith(path + "/")
    assert broker["command"][broker["command"].index("--client-uid") + 1] == "65534"
    assert pod["securityContext"]["fsGroup"] == 65534


def test_network_policy_admits_only_prometheus_to_the_metrics_port() -> None:
    policy = documents()["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == \
        documents()["DaemonSet"]["spec"]["selector"]["matchLabels"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    ports = {p["name"]: p["containerPort"] for p in containers()["exporter"]["ports"]}
    assert rule["ports"] == [{"port": ports["metrics"], "protocol": "TCP"}]


def test_every_container_has_requests_and_limits() -> None:
    for name, container in containers().items():
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, (name, kind)


def test_rollout_is_one_node_at_a_time_and_explained() -> None:
    strategy = documents()["DaemonSet"]["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    text = DAEMONSET.read_text()
    before = text[: text.index("updateStrategy:")]
    assert "outlive the pod" in before and "Ready" in before  # the comment says what happens


def test_exporter_probes_ask_what_the_exporter_serves() -> None:
    exporter = containers()["exporter"]
    ports = {p["name"]: p["containerPort"] for p in exporter["ports"]}
    listen = exporter["command"][exporter["command"].index("--listen") + 1]
    assert listen.endswith(f":{ports['metrics']}")
    probe_listen = exporter["command"][exporter["command"].index("--probe-listen") + 1]
    assert probe_listen == f"127.0.0.1:{ports['probes']}"  # the node's loopback: the kubelet's
    states = {"ready": (True, "ok")}
    app = probes_only(lambda: states["ready"])
    for probe in ("readinessProbe", "livenessProbe"):
        get = exporter[probe]["httpGet"]
        assert get["port"] == "probes" and get["host"] == "127.0.0.1"
        assert serve(app, get["path"])[0] == "200 OK", probe
    states["ready"] = (False, "the pins in /x are root's")
    status, body = serve(app, exporter["readinessProbe"]["httpGet"]["path"])
    assert status.startswith("503") and "root's" in body
    assert serve(app, exporter["livenessProbe"]["httpGet"]["path"])[0] == "200 OK"
    assert serve(app, "/metrics")[0].startswith("404")  # the probe port serves probes only
    main = make_app(CollectorRegistry(), lambda: states["ready"])
    assert "pingkiller_" not in serve(main, "/metrics")[1]  # an empty registry, but /metrics
    assert "readinessProbe" not in containers()["pingkiller"]  # the manifest says why


def serve(app: Any, path: str) -> tuple[str, str]:
    """One WSGI request: (status line, body)."""
    seen: list[str] = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "9477", "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body.decode()


# -- the Containerfile


def stages() -> list[str]:
    """The Containerfile's stages, each from its FROM line on."""
    text = CONTAINERFILE.read_text()
    parts = re.split(r"^(?=FROM )", text, flags=re.M)
    return [part for part in parts if part.startswith("FROM ")]


def apt_packages(stage: str) -> set[str]:
    joined = stage.replace("\\\n", " ")
    found: set[str] = set()
    for match in re.finditer(r"apt-get install ([^&\n]*)", joined):
        found |= {word for word in match.group(1).split() if not word.startswith("-")}
    return found


def test_containerfile_builds_the_wheel_and_runs_it_without_build_tools() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S*debian:12-slim$", text, re.M)
    build, runtime = stages()
    assert build.startswith("FROM ${BASE_IMAGE} AS build")
    assert runtime.startswith("FROM ${BASE_IMAGE}\n")
    assert "make wheel" in build and "make build" not in text  # no build before cffi exists
    assert apt_packages(runtime) == {"python3", "python3-venv"}  # no compiler, no libbpf-dev
    assert "python3 -m venv /opt/pingkiller" in runtime
    assert "--no-index" in runtime  # only the wheels the build stage made
    assert 'ENTRYPOINT ["pingkiller"]' in runtime
    applier = containers()["pingkiller"]["command"]
    assert f"CMD {applier[1:]}".replace("'", '"') in runtime  # `podman run IMAGE` = the applier


def test_container_context_leaves_out_what_this_machine_built() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "build", "dist", "**/*.so"} <= set(ignored)


def test_a_seccomp_refusal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a container whose seccomp profile forbids bpf() (e.g. podman's default one, which
    allows it only with CAP_SYS_ADMIN) EPERM is blamed on seccomp, not on capabilities."""
    monkeypatch.setattr(capabilities, "effective", lambda: 1 << capabilities.CAPABILITIES["CAP_BPF"])
    eperm, eacces = BpfError(errno.EPERM, "opening pinned map"), BpfError(errno.EACCES, "x")
    monkeypatch.setattr(capabilities, "seccomp_filtered", lambda: True)
    assert "seccomp" in str(capabilities.refused(eperm, capabilities.NEEDS_ROOT_TO_READ))
    assert "seccomp" not in str(capabilities.refused(eacces, capabilities.NEEDS_ROOT_TO_READ))
    monkeypatch.setattr(capabilities, "seccomp_filtered", lambda: False)
    assert "needs root (CAP_BPF)" in str(capabilities.refused(eperm, capabilities.NEEDS_ROOT_TO_READ))
