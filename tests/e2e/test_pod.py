"""The DaemonSet's pod without a container runtime: docs/deploy/daemonset.yaml, emulated.

Each container runs its manifest command in a private mount namespace with the pod's
security context: the root file system read-only (readOnlyRootFilesystem), the host's
bpffs read-write for the applier, only the pin root (read-only, on an empty /sys/fs/bpf)
for the exporter's broker and no bpffs at all for its server (the volumeMounts), its
user (runAsUser) and only the capabilities the manifest adds (setpriv: bounding set, no
new privileges, as allowPrivilegeEscalation: false). Everything is read from the
manifest, so the test follows it. What differs from a cluster, for safety: the policy
names a sandbox veth instead of eth0, the pins go to a private pin root, the ConfigMap is
a file in a test directory, the emptyDir a directory under /run (group 65534, setgid,
as fsGroup makes it), and the exporter listens on 127.0.0.1 and a free port instead of
the node's address and 9477.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CLI, MountNamespace, free_port, limited, xdp_ids
from test_operations import DROP_WAIT, scrape, wait_for

import pingkiller
from pingkiller.demo.sandbox import Sandbox
from pingkiller.store.layout import DEFAULT_ROOT
from pingkiller.system import capabilities, privileges

pytestmark = pytest.mark.root

MANIFEST = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "daemonset.yaml"
DOCUMENTS = {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}
POD = DOCUMENTS["DaemonSet"]["spec"]["template"]["spec"]
CONTAINERS = {c["name"]: c for c in POD["containers"]}
VOLUMES = {v["name"]: v for v in POD["volumes"]}


def test_the_pod_runs_without_a_seccomp_filter_as_here() -> None:
    """setpriv sets no seccomp filter: the emulation matches the manifest's Unconfined."""
    assert POD["securityContext"]["seccompProfile"] == {"type": "Unconfined"}


def granted(container: dict[str, Any]) -> list[str]:
    """The capabilities the manifest leaves the container (setpriv's names)."""
    caps = container["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    return [cap.lower() for cap in caps["add"]]


def mount_script(container: dict[str, Any], pin_root: Path, stage: Path, scratch: Path) -> str:
    """The container's view of the file system, made in its mount namespace (``stage``:
    an empty directory to hold the pin root while /sys/fs/bpf is covered; ``scratch``: the
    emptyDir, writable on the read-only root)."""
    steps = []
    if container["securityContext"]["readOnlyRootFilesystem"]:
        steps.append("mount -o remount,bind,ro /")
    bpffs = False
    for mount in container["volumeMounts"]:
        host = VOLUMES[mount["name"]].get("hostPath")
        if "emptyDir" in VOLUMES[mount["name"]]:
            steps.append(f"mount -n --bind {scratch} {scratch} && "
                         f"mount -n -o remount,bind,rw {scratch}")
        if host is None:
            continue  # the ConfigMap and the emptyDir: test directories, named in the command
        assert host["path"] == mount["mountPath"]
        bpffs = True
        if host["path"] == "/sys/fs/bpf":
            if mount.get("readOnly"):
                steps.append("mount --bind /sys/fs/bpf /sys/fs/bpf && "
                             "mount -o remount,bind,ro /sys/fs/bpf")
            continue
        assert host["path"] == str(DEFAULT_ROOT) and mount.get("readOnly")  # the pin root alone
        steps.append(f"mount -n --bind {pin_root} {stage} && mount -n -t tmpfs pod /sys/fs/bpf && "
                     f"mkdir {pin_root} && mount -n --move {stage} {pin_root} && "
                     f"mount -n -o remount,bind,ro {pin_root}")
    if not bpffs:
        steps.append("mount -n -t tmpfs pod /sys/fs/bpf")  # no bpffs in this container
    return " && ".join(steps)


def command(container: dict[str, Any], config_dir: Path, broker_dir: Path,
            ports: dict[int, int]) -> list[str]:
    """The manifest's command, with the substitutions the module docstring lists."""
    words = container["command"]
    assert words[0] == "pingkiller"
    moved = {m["mountPath"]: config_dir if "configMap" in VOLUMES[m["name"]] else broker_dir
             for m in container.get("volumeMounts", [])
             if "configMap" in VOLUMES[m["name"]] or "emptyDir" in VOLUMES[m["name"]]}
    out = []
    for word in words[1:]:
        for path, there in moved.items():
            word = word.replace(path, str(there))
        for port_spec in container.get("ports", []):
            number = port_spec["containerPort"]
            word = re.sub(rf"^(\$\(NODE_IP\)|127\.0\.0\.1):{number}$",
                          f"127.0.0.1:{ports[number]}", word)
        assert "$(" not in word, word
        out.append(word)
    return [*CLI, *out]


@functools.cache
def readable_by(uid: int) -> bool:
    """Whether ``uid`` can run this checkout's pingkiller (not if it lies in a home only
    root may enter: then the server runs as root with no capability instead)."""
    probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            *CLI[:1], "-c", "import pingkiller.exporter.separated"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


def as_user(container: dict[str, Any], command: list[str]) -> list[str]:
    """``command`` as the container's runAsUser with no capability (a non-root user's)."""
    security = container["securityContext"]
    uid, gid = security["runAsUser"], security.get("runAsGroup", security["runAsUser"])
    ids = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] if readable_by(uid) else []
    return ["setpriv", *ids, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", *command]


class Container:
    """One container of the pod, running."""

    def __init__(self, name: str, pod: dict[str, Path], ports: dict[int, int]) -> None:
        self.spec = CONTAINERS[name]
        self.namespace = MountNamespace()
        self.namespace.sh(mount_script(self.spec, pod["pin_root"], pod["stage"], pod["broker"]))
        run = command(self.spec, pod["config"], pod["broker"], ports)
        run = as_user(self.spec, run) if self.spec["securityContext"]["runAsUser"] else \
            limited(granted(self.spec), run)
        self.process = subprocess.Popen(self.namespace.args(run), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def effective_capabilities(self) -> set[str]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        assert "\nNoNewPrivs:\t1\n" in status  # allowPrivilegeEscalation: false
        (line,) = [x for x in status.splitlines() if x.startswith("CapEff:")]
        bits = int(line.split()[1], 16)
        names = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39,
                 "CAP_DAC_OVERRIDE": 1, "CAP_SYS_RESOURCE": 24, "CAP_NET_RAW": 13}
        assert bits & ~sum(1 << bit for bit in names.values()) == 0, hex(bits)  # nothing else
        return {name for name, bit in names.items() if bits & (1 << bit)}

    def status(self) -> privileges.Status:
        return privileges.status(self.process.pid)

    def stop(self) -> str:
        """SIGTERM, as the kubelet sends; returns stderr (the exit must be clean)."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=15)
        self.namespace.close()
        assert self.process.returncode == 0, err
        assert "Traceback" not in err, err
        return err


@pytest.fixture
def pod(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, Any]]:
    peer = sandbox.add_peer()
    config_dir = tmp_path / "pingkiller-policy"  # the ConfigMap's volume
    config_dir.mkdir()
    policy = DOCUMENTS["ConfigMap"]["data"]["policy.toml"]
    assert "[interfaces.eth0]" in policy
    (config_dir / "policy.toml").write_text(
        policy.replace("[interfaces.eth0]", f"[interfaces.{peer.host_ifname}]"))
    pin_root.mkdir(mode=0o700, exist_ok=True)  # the kubelet makes it (DirectoryOrCreate)
    run_dir = Path(f"/run/pktest-pod-{os.getpid()}")  # every user may enter /run
    run_dir.mkdir(mode=0o755)
    broker_dir, stage = run_dir / "broker", run_dir / "stage"
    broker_dir.mkdir()
    stage.mkdir()
    os.chown(broker_dir, 0, POD["securityContext"]["fsGroup"])
    os.chmod(broker_dir, 0o2777)  # an emptyDir with fsGroup
    ports = {spec["containerPort"]: free_port() for spec in CONTAINERS["exporter"]["ports"]}
    started = []
    paths = {"pin_root": pin_root, "stage": stage, "config": config_dir, "broker": broker_dir}
    try:
        for name in ("pingkiller", "exporter-broker", "exporter"):
            started.append(Container(name, paths, ports))
        yield {"peer": peer, "config": config_dir / "policy.toml", "ports": ports,
               "applier": started[0], "broker": started[1], "exporter": started[2]}
    finally:
        for container in started:
            if container.process.poll() is None:
                container.process.kill()
            _, err = container.process.communicate()
            print(f"{container.spec['name']}: {err}")  # shown when the test failed
            container.namespace.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def probe(ports: dict[int, int], container: dict[str, Any], kind: str) -> int:
    """What the kubelet's probe gets: the manifest's host, port (by name) and path."""
    get = container[kind]["httpGet"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert get["host"] == "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[named[get['port']]]}{get['path']}",
                                    timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def rules_of(ifname: str) -> set[str]:
    (info,) = [i for i in pingkiller.attachments() if i.ifname == ifname]
    return {rule.address for rule in info.rules}


def test_pod_applies_the_policy_and_its_edit_and_the_exporter_reports_it(
    pod: dict[str, Any]
) -> None:
    peer, ports = pod["peer"], pod["ports"]
    port = ports[9477]  # metrics
    ifname = peer.host_ifname
    applier, broker, exporter = pod["applier"], pod["broker"], pod["exporter"]
    exporter_spec = exporter.spec

    wait_for(lambda: any(i.ifname == ifname for i in pingkiller.attachments()), "the apply",
             timeout=30)
    assert rules_of(ifname) == {"198.51.100.0/24", "2001:db8:bad::/48"}  # the ConfigMap's
    wait_for(lambda: probe(ports, exporter_spec, "readinessProbe") == 200, "the readiness probe")
    assert probe(ports, exporter_spec, "livenessProbe") == 200
    # exactly what the manifest grants, and nothing else
    assert applier.effective_capabilities() == {f"CAP_{c.upper()}" for c in granted(applier.spec)}
    assert broker.effective_capabilities() == {"CAP_BPF"} == \
        set(capabilities.missing(0, load=False, write=False))
    served = exporter.status()  # the server: nothing at all, and its own seccomp filter
    assert (served.effective, served.permitted, served.bounding) == (0, 0, 0)
    assert served.no_new_privs and served.seccomp == 2
    if readable_by(65534):
        assert served.uid == (65534,) * 4

    (prog_id,) = xdp_ids(ifname)
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert samples[("pingkiller_up", ())] == 1
    xdp = {"interface": ifname, "hook": "xdp", "direction": "in"}
    assert samples[("pingkiller_attachment_info", tuple(sorted(
        {**xdp, "mode": "native", "program_id": str(prog_id)}.items())))] == 1
    assert samples[("pingkiller_rules", tuple(sorted(xdp.items())))] == 2
    assert peer.ping(peer.host_v4, count=1) == 1  # not blocked yet

    # An edit of the ConfigMap: the kubelet swaps the file in; here a rename does.
    config: Path = pod["config"]
    edited = config.read_text().replace('block = ["198.51.100.0/24"',
                                        f'block = ["{peer.peer_v4}", "198.51.100.0/24"')
    assert edited != config.read_text()
    config.with_suffix(".new").write_text(edited)
    config.with_suffix(".new").rename(config)
    wait_for(lambda: peer.peer_v4 in rules_of(ifname), "the edit to be applied", timeout=30)
    assert xdp_ids(ifname) == [prog_id]  # changed in place: the same program, no gap
    assert peer.ping(peer.host_v4, count=2, wait=DROP_WAIT) == 0  # now dropped
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert samples[("pingkiller_rules", tuple(sorted(xdp.items())))] == 3
    assert not any(name == "pingkiller_rule_hits_total" for name, _ in samples)  # on the
    # cluster network no series names an address
    assert samples[("pingkiller_packets_total", tuple(sorted(
        {**xdp, "reason": "drop_block"}.items())))] == 2

    log = applier.stop()
    assert "error" not in log.lower(), log
    assert f"attach {ifname}" in log and f"update {ifname}: add block {peer.peer_v4}" in log
    assert log.rstrip().endswith("stopped; attachments stay as they are")
    exporter.stop()
    broker.stop()
    assert xdp_ids(ifname) == [prog_id]  # the pod is gone, the data path stays
