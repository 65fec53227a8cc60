"""A real container runtime for the end-to-end tests: podman, with every bit of its state in one folder.

Kubernetes itself does not run here, but podman runs a Pod manifest with `podman kube play`, with real
containers, a real `emptyDir` volume shared between them, and the security contexts applied. Podman 4.3
does not know `kind: Job`, so a Job's pod template is played as a Pod (as the Job controller would create).
See ../shared/notes/container-e2e.md for the pitfalls this module works around.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

SUITE = "bookworm"
# python3-venv gives the venv module and its bundled pip, which the Containerfile uses to install the wheel.
BASE_PACKAGES = ("python3", "python3-venv")
BASE_IMAGE = "localhost/exitdir-e2e-base:latest"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    """Where the base image's root filesystem is kept between runs (it takes ~40 s to build)."""
    explicit = os.environ.get("EXITDIR_E2E_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "exitdir-e2e"


def debian_mirror() -> str:
    """The machine's own Debian mirror (the only package source reachable here), else the public one."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def base_rootfs_tar() -> Path:
    """A tarball of a minimal Debian with python3, built once with debootstrap and cached."""
    key = hashlib.sha256(f"{SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
    cache = cache_dir()
    tar = cache / f"base-{SUITE}-{key}.tar"
    if tar.exists():
        return tar
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = cache / f"rootfs-{os.getpid()}"
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        # Package lists and .debs are half the size and nothing in the image needs them.
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        partial = tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(tar)  # a run killed half-way never leaves a truncated cache behind
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tar


def shared_libraries(binary: Path) -> list[Path]:
    """What ``ldd`` lists for ``binary``: its libraries and the loader, by the paths the loader looks them up
    at (the vDSO has none: the kernel maps it)."""
    listed = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=60)
    return [Path(match) for match in re.findall(r"(/\S+) \(0x[0-9a-f]+\)", listed.stdout)]


def scratch_rootfs_tar(tar: Path, files: dict[str, Path], directories: dict[str, int]) -> None:
    """A root filesystem for an image built FROM scratch: only ``files`` (path in the image: file here,
    symlinks followed, since a library must be found under the name ``ldd`` printed), the ``directories``
    given with their modes, and the parents of both; everything owned by root."""
    made: set[str] = set()

    def directory(out: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        for parent in list(reversed(Path(name).parents))[1:]:
            directory(out, str(parent))
        if name not in made and name != ".":
            made.add(name)
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            out.addfile(info)

    with tarfile.open(tar, "w") as out:
        for name, mode in directories.items():
            directory(out, name, mode)
        for name, source in files.items():
            directory(out, str(Path(name).parent))
            real = source.resolve()
            info = out.gettarinfo(str(real), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with real.open("rb") as content:
                out.addfile(info, content)


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    content = archive.extractfile(name)
    if content is None:
        raise PodmanError(f"{name} in {archive.name!r} is not a file")
    return content.read()


class PodmanError(AssertionError):
    pass


class Podman:
    """podman with its configuration, storage and run state under ``state``, touching nothing global."""

    def __init__(self, state: Path) -> None:
        self.state = state
        for sub in ("graph", "run", "tmp", "networks"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        containers_conf = state / "containers.conf"
        containers_conf.write_text(
            "[containers]\n"
            # Root here lacks CAP_SYS_RESOURCE; podman's default of 1048576 open files fails to apply.
            'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
            "[engine]\n"
            # crun rejects this machine's hybrid cgroup layout; runc and cgroupfs work.
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{state / "tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{state / "networks"}"\n'
        )
        storage_conf = state / "storage.conf"
        storage_conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{state / "graph"}"\nrunroot = "{state / "run"}"\n'
        )
        self.env = dict(
            os.environ, CONTAINERS_CONF=str(containers_conf), CONTAINERS_STORAGE_CONF=str(storage_conf)
        )

    def __call__(self, *args: str, timeout: float = 120, check: bool = True, merge: bool = False) -> str:
        """podman's stdout; with ``merge``, stdout and stderr in the order podman wrote them (``podman
        logs`` writes a container's stderr lines to its own stderr)."""
        result = subprocess.run(
            ["podman", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            said = (result.stderr or result.stdout).strip()
            raise PodmanError(f"podman {' '.join(args)} failed ({result.returncode}): {said}")
        return result.stdout

    def import_base(self, tar: Path) -> str:
        # An imported image has no PATH, and `kube play` (unlike `podman run`) adds none.
        self("import", "--change", f"ENV=PATH={PATH}", str(tar), BASE_IMAGE, timeout=300)
        return BASE_IMAGE

    def build(self, context: Path, tag: str, base: str | None = None) -> None:
        """``context``'s Containerfile built as ``tag``, offline; ``base`` is its BASE build argument."""
        arguments = ["--build-arg", f"BASE={base}"] if base is not None else []
        self(
            "build",
            "--network",
            "none",
            *arguments,
            "--tag",
            tag,
            "--file",
            str(context / "Containerfile"),
            str(context),
            timeout=600,
        )

    def image_files(self, image: str) -> set[str]:
        """Every path in ``image`` that is not a directory, read from its layers as `podman save` writes
        them: what the image holds, not what a runtime adds to a container made from it."""
        saved = self.state / "tmp" / f"saved-{os.getpid()}.tar"
        self("save", "--format", "docker-archive", "--output", str(saved), image, timeout=300)
        files: set[str] = set()
        try:
            with tarfile.open(saved) as archive:
                (manifest,) = json.loads(_member(archive, "manifest.json"))
                for layer in manifest["Layers"]:
                    with tarfile.open(fileobj=io.BytesIO(_member(archive, layer))) as content:
                        files.update(member.name for member in content if not member.isdir())
        finally:
            saved.unlink(missing_ok=True)
        return files

    def reset(self) -> None:
        """Remove every pod, container and volume left in this state folder."""
        self("pod", "rm", "--all", "--force", "--time", "0", check=False)
        self("rm", "--all", "--force", "--time", "0", check=False)
        self("volume", "prune", "--force", check=False)


def pod_from_job(job: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The Pod the Job controller would create from ``job``, with names made unique by ``suffix``.

    An emptyDir becomes a podman volume named after the YAML volume, shared by every pod that uses the same
    name, so volume names get the suffix too.
    """
    spec = copy.deepcopy(job["spec"]["template"]["spec"])
    for volume in spec.get("volumes", []):
        volume["name"] = f"{volume['name']}-{suffix}"
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = f"{mount['name']}-{suffix}"
    name = f"{job['metadata']['name']}-{suffix}"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


_CRI_LOG = re.compile(r"^(\S+) (stdout|stderr) ([PF]) ?(.*)$")


def _epoch_seconds(stamp: str) -> float:
    """RFC 3339 with nanoseconds, as conmon writes it; datetime keeps microseconds, which is plenty here."""
    match = re.match(r"^([\d-]+T[\d:]+)(?:\.(\d+))?(Z|[+-][\d:]+)$", stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    whole, fraction, zone = match.groups()
    micros = ((fraction or "") + "000000")[:6]
    return datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}").timestamp()


@dataclass
class LogLine:
    seconds: float  # since the epoch, as the runtime stamped the line when it arrived
    text: str


@dataclass
class PlayedPod:
    """A pod started with `podman kube play`; its containers are named ``<pod>-<container>``."""

    podman: Podman
    manifest: Path
    name: str
    containers: list[str]
    _down: bool = field(default=False, init=False)

    def full(self, container: str) -> str:
        return f"{self.name}-{container}"

    def wait(self, container: str, timeout: float) -> int:
        """The container's exit code once it has exited; raises TimeoutError if it is still running."""
        try:
            out = self.podman("wait", self.full(container), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{container} still running after {timeout} s") from None
        return int(out.strip().splitlines()[-1])

    def inspect(self, container: str) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.podman("inspect", self.full(container)))
        return doc[0]

    def running(self, container: str) -> bool:
        return bool(self.inspect(container)["State"]["Running"])

    def pod_state(self) -> str:
        doc: dict[str, Any] = json.loads(self.podman("pod", "inspect", self.name))
        return str(doc["State"])

    def logs(self, container: str) -> list[LogLine]:
        """The container's stdout and stderr lines, read from its CRI-format log file as the kubelet does:
        ``TIMESTAMP STREAM P|F TEXT``, where P marks a partial line (a program writing "text" and "\\n"
        separately, as unbuffered Python does) to be joined with what follows up to the next F."""
        path = self.inspect(container)["HostConfig"]["LogConfig"]["Path"]
        lines: list[LogLine] = []
        pending: dict[str, tuple[float, str]] = {}
        for raw in Path(path).read_text(errors="replace").splitlines():
            match = _CRI_LOG.match(raw)
            if match is None:
                continue
            stamp, stream, tag, text = match.groups()
            seconds, before = pending.pop(stream, (_epoch_seconds(stamp), ""))
            if tag == "P":
                pending[stream] = (seconds, before + text)
            else:
                lines.append(LogLine(seconds, before + text))
        lines.extend(LogLine(seconds, text) for seconds, text in pending.values())
        return lines

    def texts(self, container: str) -> list[str]:
        return [line.text for line in self.logs(container)]

    def stop(self, timeout: float) -> None:
        self.podman("pod", "stop", "--time", f"{timeout:g}", self.name, timeout=timeout + 60)

    def describe(self) -> str:
        """Every container's state and logs, for a failed test's report."""
        parts = [f"pod {self.name} ({self.manifest})"]
        for container in self.containers:
            state = self.podman(
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                self.full(container),
                check=False,
            )
            logs = self.podman("logs", "--timestamps", self.full(container), check=False, merge=True)
            parts.append(f"--- {container}: {state.strip()}\n{logs.rstrip()}")
        return "\n".join(parts)

    def down(self) -> None:
        if self._down:
            return
        self._down = True
        # Stop first with a short grace (kube down would give each container 10 s), then remove the pod
        # and the volumes it created.
        self.podman("pod", "stop", "--time", "2", self.name, check=False)
        self.podman("kube", "down", str(self.manifest), check=False)


def assert_ended(pod: PlayedPod, timeout: float, **expected: int) -> None:
    """Every container named exited with the status given, and the pod as a whole reached Exited (what
    `kubectl get job` would report as complete, or failed)."""
    codes = {name: pod.wait(name, timeout=timeout) for name in expected}
    # pytest rewrites the asserts of test modules only: say what differed
    assert codes == expected, f"exit statuses {codes}, expected {expected}"
    state = pod.pod_state()
    assert state == "Exited", f"pod {state}, expected Exited"


class Play(Protocol):
    """The ``play`` fixture: run a Job's pod, optionally edited first: one of the shipped Jobs by its file
    name in deploy/kubernetes, or a test's own by its path."""

    def __call__(
        self, manifest: str | Path, edit: Callable[[dict[str, Any]], None] | None = None
    ) -> PlayedPod: ...
