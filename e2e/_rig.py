"""Two real nodes on one machine: User-Mode Linux kernels, an NFS-Ganesha server and a Samba server.

This machine kind's kernel has no NFS or SMB client, and two mounts on one kernel would share a boot id and
`/proc/locks` anyway. So the rig boots two more Linux kernels as ordinary processes (Debian's
`user-mode-linux`), "node a" and "node b", each with the host's `/` as its root (hostfs) and its own
NFS/SMB clients, caches, boot id and locks. NFS-Ganesha (NFSv4.2) and Samba (SMB 3.1.1) serve one share each.
Everything network lives in a network namespace that the rig creates and deletes: a bridge with the server
address, one tap per node; no address outside it is ever used. The recipe and its pitfalls:
../shared/notes/multinode.md. The Makefile's `e2e-deps` installs the Debian packages; this module installs
nothing.

The host runs a command on a node through the node's job agent (`_node_agent.py`): `node.run(argv)` and
`node.spawn(argv)`. Every step has a deadline; a step that fails raises `RigError` with the command, its
output and its status. `Rig.stop()` tears everything down, whatever state `Rig.start()` reached.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
AGENT = HERE / "_node_agent.py"
PACKAGES = (
    "user-mode-linux kmod uml-utilities nfs-ganesha nfs-ganesha-vfs nfs-common samba cifs-utils iproute2"
)
TOOLS = ("linux.uml", "uml_mconsole", "ganesha.nfsd", "smbd", "smbpasswd", "ip", "ss", "mount.cifs")
UML_MODULES = Path("/usr/lib/uml/modules")
SUBNET = "10.77.0"  # exists only inside the rig's own network namespace
SERVER = f"{SUBNET}.1"
NODES = {"a": f"{SUBNET}.2", "b": f"{SUBNET}.3"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STEP = 30.0  # the deadline of one setup or tear-down step: each takes well under a second to a few seconds
BOOT = 60.0  # a node's boot, up to its agent's first listing

T = TypeVar("T")
FIGURES: list[str] = []  # what this run measured, printed at the end of the session


class RigError(Exception):
    """A rig step failed: the message has the command, its output and its status."""


def _describe(argv: Sequence[str], status: object, out: str, err: str) -> str:
    text = f"{' '.join(argv)}: status {status}"
    for label, stream in (("stdout", out), ("stderr", err)):
        if stream.strip():
            text += f"\n--- {label}:\n{stream.rstrip()}"
    return text


def run(argv: Sequence[str], *, timeout: float = STEP, stdin: str | None = None) -> str:
    """Runs a host command; its stdout, or `RigError` with everything when it fails or overruns."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else ""
        err = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else ""
        raise RigError(_describe(argv, f"none: still running after {timeout} s", out, err)) from None
    except OSError as error:
        raise RigError(f"{' '.join(argv)}: cannot run: {error}") from None
    if done.returncode != 0:
        raise RigError(_describe(argv, done.returncode, done.stdout, done.stderr))
    return done.stdout


def poll(condition: Callable[[], T | None], what: str, timeout: float, explain: Callable[[], str]) -> T:
    """Polls ``condition`` until it returns something other than None; `RigError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise RigError(f"{what}: not within {timeout} s\n{explain()}")
        time.sleep(0.02)  # the interval of a polling loop with a deadline, not a synchronisation


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _exists(path: Path) -> bool | None:
    return True if path.exists() else None


def _publish(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.rename(path)


@dataclass
class Job:
    """A command running on a node: its output so far, lines awaited with a deadline, and its status."""

    node: Node
    name: str
    argv: list[str]

    @property
    def out(self) -> str:
        return _read(self.node.ctl / f"{self.name}.out")

    @property
    def err(self) -> str:
        return _read(self.node.ctl / f"{self.name}.err")

    def status(self) -> int | None:
        text = _read(self.node.ctl / f"{self.name}.status")
        return int(text) if text else None

    def describe(self) -> str:
        status = self.status()
        return f"node {self.node.name}: " + _describe(
            self.argv, "none: still running" if status is None else status, self.out, self.err
        )

    def expect(self, fragment: str, timeout: float) -> str:
        """The first complete line of stdout containing ``fragment``; `RigError` after ``timeout``."""

        def line() -> str | None:
            complete = self.out.rpartition("\n")[0]
            return next((text for text in complete.splitlines() if fragment in text), None)

        return poll(line, f"node {self.node.name}: a line with {fragment!r}", timeout, self.describe)

    def wait(self, timeout: float) -> int:
        """The exit status (negative: that signal); the job is killed and `RigError` raised after
        ``timeout``."""
        try:
            return poll(self.status, f"node {self.node.name}: the end of the command", timeout, self.describe)
        except RigError:
            self.kill()
            raise

    def kill(self) -> None:
        if self.status() is None:
            _publish(self.node.ctl / f"{self.name}.kill", "")


@dataclass
class Node:
    """One User-Mode Linux kernel: ``run`` and ``spawn`` execute a command on it through its agent."""

    name: str
    address: str
    umid: str
    ctl: Path
    console: Path
    process: subprocess.Popen[bytes] | None = None
    jobs: int = 0
    mounted: list[Path] = field(default_factory=list)  # what tear-down unmounts

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> Job:
        self.jobs += 1
        job = Job(self, f"{self.jobs:04d}", list(argv))
        _publish(self.ctl / f"{job.name}.job", json.dumps({"argv": job.argv, "env": env or {}}))
        return job

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None, *, timeout: float = STEP) -> str:
        """Runs a command on the node; its stdout, or `RigError` when it fails or overruns."""
        job = self.spawn(argv, env)
        if job.wait(timeout) != 0:
            raise RigError(job.describe())
        return job.out


@dataclass
class Rig:
    """The two nodes, the two servers and the namespace; ``mounts`` maps "nfs" and "smb" to the path where
    both nodes mount that share (each in its own kernel; the host sees an empty directory there)."""

    base: Path
    namespace: str = field(default_factory=lambda: f"exitdir-rig-{os.getpid()}-{secrets.token_hex(3)}")
    nodes: dict[str, Node] = field(default_factory=dict)
    mounts: dict[str, Path] = field(default_factory=dict)
    setup_seconds: float = 0.0
    _namespace_made: bool = False
    _password: str = field(default_factory=lambda: secrets.token_hex(12))
    _boots: int = 0

    @property
    def a(self) -> Node:
        return self.nodes["a"]

    @property
    def b(self) -> Node:
        return self.nodes["b"]

    def start(self) -> None:
        """Sets up everything, or raises `RigError`; call `stop()` in any case."""
        missing = [tool for tool in TOOLS if shutil.which(tool, path=PATH) is None]
        if missing or not UML_MODULES.is_dir():
            raise RigError(f"missing {', '.join(missing) or UML_MODULES}: run `make e2e-deps` ({PACKAGES})")
        started = time.monotonic()
        self._network()
        self._nfs_server()
        self._smb_server(self._password)
        for name, address in NODES.items():
            self._boot(name, address)
        self._up(list(self.nodes.values()))
        self.setup_seconds = time.monotonic() - started

    def _up(self, nodes: list[Node]) -> None:
        """Waits for ``nodes`` to boot, then mounts both shares on them."""
        for node in nodes:
            poll(
                functools.partial(_exists, node.ctl / "agent.ready"),
                f"node {node.name} booted and its agent listening",
                BOOT,
                functools.partial(self._boot_log, node),
            )
        self._mount(nodes)

    def halt(self, name: str) -> None:
        """Halts node ``name`` as a lost node goes: its kernel stops at once, so nothing on it is closed,
        unmounted or unlocked, and nothing more is sent to the servers. Raises `RigError` if it survives."""
        problem = self._halt(self.nodes[name])
        if problem:
            raise RigError(problem)

    def boot_again(self, name: str) -> None:
        """Boots node ``name`` afresh after `halt()` (a new kernel, so a new boot id), shares mounted."""
        self._boot(name, NODES[name])
        self._up([self.nodes[name]])

    def _ns(self, *argv: str, timeout: float = STEP, stdin: str | None = None) -> str:
        return run(["ip", "netns", "exec", self.namespace, *argv], timeout=timeout, stdin=stdin)

    def _network(self) -> None:
        run(["ip", "netns", "add", self.namespace])
        self._namespace_made = True
        ip = ["ip", "-n", self.namespace]
        run([*ip, "link", "set", "lo", "up"])
        run([*ip, "link", "add", "br0", "type", "bridge"])
        run([*ip, "addr", "add", f"{SERVER}/24", "dev", "br0"])
        run([*ip, "link", "set", "br0", "up"])
        for name in NODES:
            run([*ip, "tuntap", "add", f"tap-{name}", "mode", "tap"])
            run([*ip, "link", "set", f"tap-{name}", "master", "br0"])
            run([*ip, "link", "set", f"tap-{name}", "up"])

    def _listening(self, port: int, what: str, log: Path) -> None:
        def bound() -> bool | None:
            listening = self._ns("ss", "-Htln")  # Ganesha binds an IPv4-mapped IPv6 socket: [::ffff:ADDR]
            return True if f"{SERVER}:{port} " in listening or f"{SERVER}]:{port} " in listening else None

        poll(bound, f"{what} listening on {SERVER}:{port}", STEP, lambda: _read(log)[-4000:])

    def _nfs_server(self) -> None:
        export = self.base / "export" / "nfs"
        export.mkdir(parents=True)
        export.chmod(0o777)  # root on the nodes is squashed to nobody
        (self.base / "ganesha").mkdir()
        conf = self.base / "ganesha.conf"
        conf.write_text(
            f"""
NFS_CORE_PARAM {{ Bind_addr = {SERVER}; Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false;
    Enable_UDP = false; }}
NFSV4 {{ Graceless = true; Lease_Lifetime = 20; Grace_Period = 20; RecoveryRoot = {self.base}/ganesha; }}
EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Access_Type = RW; Squash = Root_Squash;
    Protocols = 4; Transports = TCP; SecType = sys; FSAL {{ Name = VFS; }} }}
"""
        )
        log = self.base / "ganesha.log"
        self._ns(
            "ganesha.nfsd",
            "-f",
            str(conf),
            "-L",
            str(log),
            "-p",
            str(self.base / "ganesha.pid"),
            "-N",
            "NIV_EVENT",
        )
        self._listening(2049, "NFS-Ganesha", log)

    def _smb_server(self, password: str) -> None:
        export = self.base / "export" / "smb"
        export.mkdir(parents=True)
        state = self.base / "samba"
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
            (state / sub).mkdir(parents=True)
        conf = self.base / "smb.conf"
        conf.write_text(
            f"""[global]
interfaces = {SERVER}/24
bind interfaces only = yes
smb ports = 445
disable netbios = yes
server role = standalone server
passdb backend = tdbsam:{state}/private/passdb.tdb
private dir = {state}/private
lock directory = {state}/lock
state directory = {state}/state
cache directory = {state}/cache
pid directory = {state}/pid
ncalrpc dir = {state}/ncalrpc
log file = {state}/log/smbd.log
load printers = no
printcap name = /dev/null
disable spoolss = yes
# A node that dies sends nothing: without probes Samba would keep its locks until the kernel's default
# keepalive (2 hours). With these the connection, and the dead node's locks with it, go in ~11 s.
socket options = TCP_NODELAY SO_KEEPALIVE TCP_KEEPIDLE=5 TCP_KEEPINTVL=2 TCP_KEEPCNT=3

[exit]
path = {export}
read only = no
"""
        )
        run(["smbpasswd", "-c", str(conf), "-a", "-s", "root"], stdin=f"{password}\n{password}\n")
        self._ns("smbd", "-D", "-s", str(conf))
        self._listening(445, "Samba", state / "log" / "smbd.log")

    def _boot(self, name: str, address: str) -> None:
        version = next(UML_MODULES.iterdir()).name
        modroot = self.base / "modroot"
        if not modroot.exists():
            (modroot / "lib" / "modules").mkdir(parents=True)
            (modroot / "lib" / "modules" / version).symlink_to(UML_MODULES / version)
            # cifs loads its crypto modules on demand, through the kernel's modprobe helper
            (self.base / "modprobe").write_text(f'#!/bin/sh\nexec /sbin/modprobe -d {modroot} "$@"\n')
            (self.base / "modprobe").chmod(0o755)
        self._boots += 1  # each boot its own umid and control directory: nothing of a halted one is reused
        umid = f"{self.namespace}-{name}{self._boots}"
        ctl = self.base / f"node-{name}.{self._boots}"
        ctl.mkdir()
        init = self.base / f"init-{name}.sh"
        init.write_text(
            f"""#!/bin/sh
# Node {name}'s init: its own mounts, modules, hostname and address, then the job agent.
export PATH={PATH} HOME=/root
exec >{self.base}/init-{name}.log 2>&1
set -x
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib/nfs
echo node-{name} >/proc/sys/kernel/hostname
echo {self.base}/modprobe >/proc/sys/kernel/modprobe
modprobe -d {modroot} nfs nfs4_unique_id={umid}
modprobe -d {modroot} nfsv4
modprobe -d {modroot} cifs
ip link set lo up
ip addr add {address}/24 dev eth0
ip link set eth0 up
exec {sys.executable} {AGENT} {ctl}
"""
        )
        init.chmod(0o755)
        console = self.base / f"console-{name}.log"
        node = Node(name, address, umid, ctl, console)
        self.nodes[name] = node
        (self.base / "uml").mkdir(exist_ok=True)
        with open(console, "wb") as out:
            node.process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.namespace,
                    "linux.uml",
                    f"umid={umid}",
                    f"uml_dir={self.base}/uml",
                    "mem=768M",
                    "rootfstype=hostfs",
                    "rootflags=/",
                    "rw",
                    f"init={init}",
                    f"eth0=tuntap,tap-{name}",
                    "con=null",
                    "con0=null,fd:1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": PATH, "TMPDIR": "/dev/shm"},
                start_new_session=True,
            )

    def _boot_log(self, node: Node) -> str:
        status = None if node.process is None else node.process.poll()
        return (
            f"linux.uml {'running' if status is None else f'exited with status {status}'}\n"
            f"--- console (last lines):\n{_read(node.console)[-3000:]}\n"
            f"--- init log:\n{_read(self.base / f'init-{node.name}.log')[-3000:]}"
        )

    def _mount(self, nodes: list[Node]) -> None:
        self.mounts = {"nfs": self.base / "mnt" / "nfs", "smb": self.base / "mnt" / "smb"}
        for path in self.mounts.values():
            path.mkdir(parents=True, exist_ok=True)
        jobs = [
            (node, path, node.spawn(self._mount_command(fs, path)))
            for node in nodes
            for fs, path in self.mounts.items()
        ]
        failed = []
        for node, path, job in jobs:
            if job.wait(STEP) == 0:
                node.mounted.append(path)
            else:
                failed.append(job.describe())
        if failed:
            raise RigError("\n".join(failed))

    def _mount_command(self, fs: str, path: Path, options: str = "") -> list[str]:
        if fs == "nfs":
            return ["mount", "-t", "nfs4", "-o", f"vers=4.2{options}", f"{SERVER}:/export", str(path)]
        return [
            "mount",
            "-t",
            "cifs",
            f"//{SERVER}/exit",
            str(path),
            "-o",
            f"username=root,password={self._password},vers=3.1.1{options}",
        ]

    def mount_again(self, name: str, fs: str, options: str) -> Path:
        """Mounts share ``fs`` once more on node ``name``, with ``options`` added (for NFS, add
        ``nosharecache``: a second mount of one export shares the first one's options otherwise); where."""
        node = self.nodes[name]
        path = self.base / "mnt" / f"{fs}-{options.replace(',', '-').replace('=', '')}-{node.jobs}"
        path.mkdir(parents=True)
        node.run(self._mount_command(fs, path, "," + options))
        node.mounted.append(path)
        return path

    def unmount(self, name: str, path: Path) -> None:
        """Undoes `mount_again`."""
        node = self.nodes[name]
        node.run(["umount", str(path)])
        node.mounted.remove(path)

    def stop(self) -> None:
        """Tears down whatever `start()` set up, even half-way: unmounts, halts the nodes, kills the servers
        by their pid files and whatever else runs in the namespace, deletes the namespace. Raises
        `RigError` at the end when a step failed or a node's kernel survived."""
        problems: list[str] = []

        def attempt(step: Callable[..., object], *args: object) -> None:
            try:
                step(*args)
            except (RigError, OSError) as error:
                problems.append(str(error))

        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                for path in node.mounted:
                    attempt(functools.partial(node.run, timeout=10), ["umount", "-f", "-l", str(path)])
        for node in self.nodes.values():
            problem = self._halt(node)
            if problem:
                problems.append(problem)
        for pidfile in (self.base / "ganesha.pid", self.base / "samba" / "pid" / "smbd.pid"):
            attempt(_kill_pidfile, pidfile)
        if self._namespace_made:
            attempt(self._kill_namespace)
            attempt(run, ["ip", "netns", "delete", self.namespace])
        survivors = _processes_naming(self.namespace)
        for pid in survivors:
            _signal(pid, signal.SIGKILL)
        if survivors:
            problems.append(f"processes of the rig survived tear-down (SIGKILLed): {survivors}")
        if problems:
            raise RigError("tear-down: " + "\n".join(problems))

    def _halt(self, node: Node) -> str:
        """Halts ``node``'s kernel and kills what is left of it; what went wrong, or ''."""
        problem = ""
        socket = self.base / "uml" / node.umid / "mconsole"
        if node.process is not None and node.process.poll() is None and socket.exists():
            # uml_mconsole often waits for a reply that a halted kernel never sends: the kernel's end,
            # not the tool's, is what counts
            console = subprocess.Popen(
                ["uml_mconsole", str(socket), "halt"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problem = f"node {node.name}: still running 10 s after `uml_mconsole halt`; killed"
            console.kill()
            console.wait()
        for pid in _processes_naming(f"umid={node.umid}\0"):  # the kernel's helper processes, or all of it
            _signal(pid, signal.SIGKILL)
        return problem

    def _kill_namespace(self) -> None:
        """Whatever still runs in the namespace is the rig's (smbd's helpers, a node's processes)."""
        pids = [int(pid) for pid in run(["ip", "netns", "pids", self.namespace]).split()]
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        poll(
            lambda: True if not run(["ip", "netns", "pids", self.namespace]).split() else None,
            f"the processes of namespace {self.namespace} gone",
            10,
            lambda: run(["ip", "netns", "pids", self.namespace]),
        )


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _kill_pidfile(path: Path) -> None:
    text = _read(path).strip()
    if not text:
        return
    pid = int(text)
    _signal(pid, signal.SIGTERM)
    poll(lambda: True if _gone(pid) else None, f"pid {pid} of {path} gone", 10, str)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie that its parent has yet to reap."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    return not stat or stat.rpartition(")")[2].split()[0] == "Z"


def _processes_naming(fragment: str) -> list[int]:
    """Processes whose command line contains ``fragment``: every process of a node has the umid in its."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if fragment.encode() in cmdline:
                found.append(int(entry.name))
    return found
