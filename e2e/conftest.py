"""Fixtures for the end-to-end tests: one podman state folder and one image per run, a pod per test."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import exitdir

from _podman import (
    BASE_IMAGE,
    Play,
    PlayedPod,
    Podman,
    base_rootfs_tar,
    pod_from_job,
    scratch_rootfs_tar,
    shared_libraries,
)
from _rig import FIGURES, Rig, RigError

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
IMAGE = f"exitdir:{exitdir.__version__}"  # what every manifest names; see tests/test_manifests.py
CADDY = ROOT / "e2e" / "caddy"
CADDY_CONFIGS = ("site.json", "admin.json")  # in the caddy image's /etc/caddy
CADDY_IMAGE = "exitdir-e2e-caddy:scratch"  # what e2e/pods/*.yaml name


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make e2e`, which installs them", pytrace=False)
    runtime = Podman(tmp_path_factory.mktemp("podman-state"))
    runtime.import_base(base_rootfs_tar())
    yield runtime
    runtime.reset()


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Two User-Mode Linux nodes with NFS and SMB mounted, in a network namespace of this run's own (see
    _rig.py). Torn down at the end of the session whatever happened, interrupted runs included."""
    made = Rig(tmp_path_factory.mktemp("rig"))
    # SIGTERM (a CI job cancelled) unwinds like Ctrl-C, through the tear-down below
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        made.start()
    except BaseException as error:
        # set-up failed or was interrupted: tear down, and report what failed first (an interruption stays
        # one, and stops the run)
        signal.signal(signal.SIGTERM, previous)
        problem = _stop(made)
        if problem:
            print(problem, file=sys.stderr)
        if isinstance(error, RigError):
            pytest.fail(f"the two-kernel rig: {error}", pytrace=False)
        raise
    FIGURES.append(f"rig setup: {made.setup_seconds:.1f} s (two kernels booted, NFS and SMB mounted on both)")
    try:
        yield made
    finally:
        signal.signal(signal.SIGTERM, previous)
        problem = _stop(made)
        if problem:
            pytest.fail(problem, pytrace=False)


def _stop(rig: Rig) -> str:
    """Tears the rig down; what went wrong, or ''."""
    try:
        rig.stop()
    except RigError as error:
        return f"the two-kernel rig: {error}"
    return ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The rig's figures (setup time, latencies), measured by this run."""
    if FIGURES:
        terminalreporter.section("two-kernel rig figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Our image, built from the Containerfile and a wheel of this checkout, as a user would build it."""
    context = tmp_path_factory.mktemp("image-context")
    shutil.copy(ROOT / "Containerfile", context / "Containerfile")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(context / "dist"), str(ROOT)],
        check=True,
        timeout=300,
    )
    podman.build(context, f"localhost/{IMAGE}", base=BASE_IMAGE)
    return IMAGE


@pytest.fixture(scope="session")
def caddy_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stand-in sidecar with no Python and no shell: Debian's caddy binary, the libraries ``ldd`` lists
    for it and its two configs, in an image built FROM scratch (e2e/caddy/Containerfile)."""
    binary = shutil.which("caddy")
    if binary is None:
        pytest.fail("missing caddy: run `make e2e-deps`, which installs it", pytrace=False)
    context = tmp_path_factory.mktemp("caddy-context")
    shutil.copy(CADDY / "Containerfile", context / "Containerfile")
    files = {"usr/bin/caddy": Path(binary)}
    files.update({str(library).lstrip("/"): library for library in shared_libraries(Path(binary))})
    files.update({f"etc/caddy/{config}": CADDY / config for config in CADDY_CONFIGS})
    # caddy's emptyDir is mounted here: podman gives a new volume the mode of its mount point, and caddy
    # (user 65532) writes its autosaved config and instance id in it
    scratch_rootfs_tar(context / "rootfs.tar", files, {"var/lib/caddy": 0o1777})
    podman.build(context, f"localhost/{CADDY_IMAGE}")
    return CADDY_IMAGE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def play(podman: Podman, image: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Play]:
    """``play("job.yaml", edit=None)`` runs that Job's pod; every pod is torn down after the test, and the
    logs of each container are printed when the test failed."""
    pods: list[PlayedPod] = []

    def start(manifest: str | Path, edit: Callable[[dict[str, Any]], None] | None = None) -> PlayedPod:
        job = yaml.safe_load((manifest if isinstance(manifest, Path) else MANIFESTS / manifest).read_text())
        if edit is not None:
            edit(job)
        pod = pod_from_job(job, uuid.uuid4().hex[:8])
        path = tmp_path / f"{pod['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(pod))
        played = PlayedPod(
            podman, path, pod["metadata"]["name"], [c["name"] for c in pod["spec"]["containers"]]
        )
        pods.append(played)
        podman("kube", "play", "--network", "none", str(path))
        return played

    yield start
    for pod in pods:
        if request.node.stash.get(_FAILED, True):
            print(pod.describe())
        pod.down()
