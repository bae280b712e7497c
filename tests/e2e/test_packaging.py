"""What ships: `make wheel`'s sdist and wheel, the wheel installed in a fresh venv and
used from outside the source tree, and `make install` (launcher, man pages, systemd unit)."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pingkiller.demo.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]  # type: ignore[index]
# The Makefile's venv is the interpreter running these tests, whatever its path.
MAKE = ["make", "--no-print-directory", "-C", str(REPO), f"VENV={sys.prefix}"]
# Only what a login shell would have: no PYTHONPATH, no venv, nothing of the source tree.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def dist() -> Path:
    """`make wheel` once for the module: dist/ with the sdist and the repaired wheel."""
    result = subprocess.run([*MAKE, "wheel"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return REPO / "dist"


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob(f"pingkiller-{VERSION}-*.whl")
    return found


def test_wheel_is_abi3_manylinux(wheel: Path) -> None:
    machine = platform.machine()
    assert re.fullmatch(rf"pingkiller-{re.escape(VERSION)}-cp311-abi3-manylinux_2_\d+_{machine}\.whl",
                        wheel.name), wheel.name
    auditwheel = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)],
                                capture_output=True, text=True, timeout=120)
    assert auditwheel.returncode == 0, auditwheel.stderr
    assert "manylinux_2_" in auditwheel.stdout


def test_wheel_carries_license_man_pages_and_bundled_libraries(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    info = f"pingkiller-{VERSION}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert {"pingkiller/bpf/_libbpf.pyi", "pingkiller/_datapath.pyi", "pingkiller/py.typed"} <= set(names)
    license_text = zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE").decode()
    assert "GNU GENERAL PUBLIC LICENSE" in license_text and "Version 2, June 1991" in license_text
    pages = {Path(n).name for n in names if "/share/man/man1/" in n and n.endswith(".1")}
    assert {p.name for p in (REPO / "docs" / "man").glob("*.1")} == pages
    assert "pingkiller.1" in pages and "pingkiller-attach.1" in pages
    libraries = [Path(n).name for n in names if n.startswith("pingkiller.libs/")]
    assert any(n.startswith("libbpf") for n in libraries)
    assert any(n.startswith("libelf") for n in libraries)


def test_wheel_holds_no_build_machine_path(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    # The clone, the venv, pip's build directory, and a Python not installed in /usr (pyenv).
    forbidden = [str(REPO).encode(), sys.prefix.encode(), b"/tmp/pip-"]
    if sys.base_prefix not in ("/usr", "/usr/local"):
        forbidden.append(sys.base_prefix.encode())
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("RECORD", "auditwheel.cdx.json"):
            data = path.read_bytes()
            assert not [f for f in forbidden if f in data], f"{path.name} names a build path"
    extensions = sorted(tmp_path.glob("pingkiller/**/_*.abi3.so"))
    assert [e.name for e in extensions] == ["_datapath.abi3.so", "_libbpf.abi3.so"]
    for extension in extensions:
        dynamic = subprocess.run(["readelf", "-d", str(extension)], capture_output=True,
                                 text=True).stdout
        for line in dynamic.splitlines():
            if "RPATH" in line or "RUNPATH" in line:
                assert "pingkiller.libs]" in line and "$ORIGIN" in line, line


def test_sdist_holds_everything_to_rebuild_and_test(dist: Path) -> None:
    (sdist,) = dist.glob(f"pingkiller-{VERSION}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "Makefile", "build.py", "setup.py", "pyproject.toml",
                   "scripts/bootstrap.sh", "kern/pingkiller.bpf.c", "kern/pingkiller.h",
                   "kern/uapi.h", "cffi_src/shims.c", "cffi_src/libbpf_h.py", "docs/cli.md",
                   "docs/man/pingkiller.1", "deploy/pingkiller.service",
                   "docs/deploy/daemonset.yaml", "tests/conftest.py", "tests/kernel/frames.py",
                   ".ci/run"):
        assert needed in names, f"{needed} missing from {sdist.name}"
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


def test_sdist_metadata_needs_no_compiler_or_kernel(dist: Path, tmp_path: Path) -> None:
    """What pip asks first of an sdist (its metadata) runs with no clang, bpftool or make."""
    (sdist,) = dist.glob(f"pingkiller-{VERSION}.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path)  # our own sdist (filter= needs Python 3.11.4)
    source = tmp_path / f"pingkiller-{VERSION}"
    script = ("import setuptools.build_meta as backend, sys; "
              "print(backend.prepare_metadata_for_build_wheel(sys.argv[1]))")
    out = tmp_path / "metadata"
    out.mkdir()
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=source, capture_output=True,
                            text=True, timeout=120, env={"PATH": str(tmp_path / "no-tools")})
    assert result.returncode == 0, result.stderr
    metadata = (out / result.stdout.split()[-1] / "METADATA").read_text()
    assert f"Version: {VERSION}" in metadata and "License-Expression: GPL-2.0-only" in metadata


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (from the base interpreter) with nothing but the wheel and its deps."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                            capture_output=True, text=True, timeout=600, cwd="/")
    assert result.returncode == 0, result.stderr
    return venv


@pytest.mark.root
def test_installed_wheel_imports_from_its_venv_and_passes_doctor(installed: Path) -> None:
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import pingkiller.bpf._libbpf as n; print(n.__file__)"],
                           capture_output=True, text=True, env=CLEAN_ENV, cwd="/", check=True)
    assert where.stdout.startswith(str(installed))
    doctor = subprocess.run([str(installed / "bin" / "pingkiller"), "doctor", "--json"],
                            capture_output=True, text=True, env=CLEAN_ENV, cwd="/", timeout=60)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {check["name"]: check["status"] for check in json.loads(doctor.stdout)["checks"]}
    assert checks["BPF object"] == "ok" and checks["libbpf"] == "ok"


@pytest.mark.root
def test_installed_wheel_kills_a_ping_run_from_root_directory(
    installed: Path, sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()
    env = {**CLEAN_ENV, "PINGKILLER_PIN_ROOT": str(pin_root)}

    def pingkiller(*args: str) -> str:
        result = subprocess.run([str(installed / "bin" / "pingkiller"), *args], capture_output=True,
                                text=True, env=env, cwd="/", timeout=60)
        assert result.returncode == 0 and not result.stderr, result.stdout + result.stderr
        return result.stdout

    assert peer.ping(peer.host_v4) == 1
    pingkiller("attach", peer.host_ifname, "--block", peer.peer_v4)
    assert peer.ping(peer.host_v4, count=3) == 0
    assert peer.ping(peer.host_v6) == 1  # only the blocked address is killed
    (status,) = json.loads(pingkiller("status", peer.host_ifname, "--json"))
    assert status["stats"]["packets"]["drop_block"] >= 3
    pingkiller("detach", peer.host_ifname)
    assert peer.ping(peer.host_v4) == 1


@pytest.mark.root
def test_make_install_places_launcher_man_pages_and_a_unit_that_verifies(
    wheel: Path, tmp_path: Path
) -> None:
    prefix, bindir, mandir, unitdir = (tmp_path / d for d in ("opt", "bin", "man", "units"))
    result = subprocess.run(
        [*MAKE, "install", f"WHEEL={wheel}", f"PREFIX={prefix}", f"BINDIR={bindir}",
         f"MANDIR={mandir}", f"UNITDIR={unitdir}"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    launcher = bindir / "pingkiller"
    assert launcher.resolve() == (prefix / "bin" / "pingkiller").resolve()
    help_text = subprocess.run([str(launcher), "--help"], capture_output=True, text=True,
                               env=CLEAN_ENV, cwd="/", check=True).stdout
    assert "man pingkiller" in help_text
    assert (mandir / "man1" / "pingkiller-attach.1").is_file()
    if shutil.which("man"):
        page = subprocess.run(["man", "-w", "pingkiller-attach"], capture_output=True, text=True,
                              env={**CLEAN_ENV, "MANPATH": str(mandir)})
        assert page.stdout.strip() == str(mandir / "man1" / "pingkiller-attach.1")
    unit = unitdir / "pingkiller.service"
    assert f"ExecStart={launcher} apply -f /etc/pingkiller/policy.toml" in unit.read_text()
    drop_in = (prefix / "share" / "pingkiller" / "detach-on-stop.conf").read_text()
    assert f"ExecStop={launcher} detach --all" in drop_in
    analyze = shutil.which("systemd-analyze")  # make setup installs systemd
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd"
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines() if "pingkiller" in line]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    uninstall = subprocess.run(
        [*MAKE, "uninstall", f"PREFIX={prefix}", f"BINDIR={bindir}", f"MANDIR={mandir}",
         f"UNITDIR={unitdir}"], capture_output=True, text=True, timeout=60,
    )
    assert uninstall.returncode == 0, uninstall.stderr
    assert not prefix.exists() and not launcher.exists() and not unit.exists()
    assert not list((mandir / "man1").glob("pingkiller*"))


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert os.access(REPO / "scripts" / "bootstrap.sh", os.X_OK)
