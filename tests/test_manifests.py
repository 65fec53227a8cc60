"""The shipped Kubernetes manifests: valid for the API server, and right in what the validator cannot see.

They are also run for real, on podman, by the end-to-end tests (`make e2e`, e2e/test_kubernetes.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import signal
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import exitdir
from exitdir import _cli
from exitdir._config import resolve_liveness_dir
from exitdir._ready import READY_PRESETS
from exitdir._stops import QUIT_PRESETS

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
IMAGE = f"exitdir:{exitdir.__version__}"
# The oldest Kubernetes still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
# The third-party sidecars the manifests run beside exitdir's containers (image without its tag), and the
# program each image runs (its entrypoint's file name), which `follow --process` looks for.
CLOUD_SQL_PROXY = "gcr.io/cloud-sql-connectors/cloud-sql-proxy"
SIDECAR_PROGRAMS = {CLOUD_SQL_PROXY: "cloud-sql-proxy"}
# The endpoints the presets use, as the checks below must find them served (docs/sidecars.md cites each).
LINKERD_SHUTDOWN = urllib.parse.urlsplit(QUIT_PRESETS["linkerd"])
CLOUD_SQL_QUIT = urllib.parse.urlsplit(QUIT_PRESETS["cloud-sql-proxy"])
CLOUD_SQL_READY = urllib.parse.urlsplit(READY_PRESETS["cloud-sql-proxy"])


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _load(path: Path) -> dict[str, Any]:
    """The manifest's Job (a file may hold the claim of its shared volume too)."""
    (job,) = [doc for doc in _documents(path) if doc["kind"] == "Job"]
    return job


def _shared_volumes(pod: dict[str, Any], claims: dict[str, dict[str, Any]]) -> tuple[set[str], list[str]]:
    """The pod's volumes that can hold an exit directory, and what is wrong with them: an emptyDir (one
    pod), or a claim of this file's that every node can mount (ReadWriteMany: pods on several nodes)."""
    found, wrong = set(), []
    for volume in pod.get("volumes", []):
        if "emptyDir" in volume:
            found.add(volume["name"])
        elif "persistentVolumeClaim" in volume:
            claim = claims.get(volume["persistentVolumeClaim"]["claimName"])
            if claim is None:
                wrong.append(f"volume {volume['name']}: its claim is not in the manifest")
            elif "ReadWriteMany" not in claim["spec"].get("accessModes", []):
                wrong.append(f"volume {volume['name']}: its claim is not ReadWriteMany")
            found.add(volume["name"])
    if not found:
        wrong.append("no emptyDir or ReadWriteMany volume to share the exit directory")
    return found, wrong


def _sidecar_image(image: object) -> str | None:
    """The known sidecar image ``image`` names (without its tag or digest), or None."""
    repository = str(image).split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return repository if repository in SIDECAR_PROGRAMS else None


def problems(job: dict[str, Any], claims: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """What kubernetes-validate lets through but would break the Job or its exit directory. ``claims``:
    the manifest's PersistentVolumeClaims, by name."""
    found: list[str] = []
    pod = job["spec"]["template"]["spec"]
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):  # a Job rejects Always; typos pass schema
        found.append(f"restartPolicy {pod.get('restartPolicy')!r}: a Job needs Never or OnFailure")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        found.append("the pod does not set runAsNonRoot: true")
    exit_volumes, wrong = _shared_volumes(pod, claims or {})
    found.extend(wrong)
    for container in _all_containers(pod):
        name = container["name"]
        security = container.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: capabilities are not all dropped")
        if container.get("image") != IMAGE:
            if _sidecar_image(container.get("image")) is None:
                known = ", ".join(sorted(SIDECAR_PROGRAMS))
                found.append(
                    f"{name}: image {container.get('image')!r} is not {IMAGE} (nor a sidecar: {known})"
                )
            continue  # a sidecar exitdir stops from outside: it needs no exit directory
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] in exit_volumes]
        if not mounts:
            found.append(f"{name}: does not mount the exit directory volume")
        found.extend(f"{name}: {p}" for p in _directory_problems(env, [m["mountPath"] for m in mounts]))
        found.extend(
            f"{name}: {p}" for p in _cli_problems(container.get("command"), container.get("args", []))
        )
    found.extend(_one_directory_problems(pod, exit_volumes))
    found.extend(_sidecar_problems(job["spec"]["template"]))
    found.extend(_lifecycle_problems(pod))
    return found


def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod's containers, its init containers (native sidecars among them) included."""
    return [*pod.get("initContainers", []), *pod["containers"]]


# What the kubelet gives a pod to stop when it has no terminationGracePeriodSeconds.
DEFAULT_GRACE_PERIOD = 30


def _lifecycle_problems(pod: dict[str, Any]) -> list[str]:
    """Followers whose lifecycle policy cannot work in this pod of a Job: a native sidecar (an init
    container with restartPolicy: Always) that exits at the marker is restarted, finds the marker, exits
    again, in a loop until the pod ends, unless it lingers; a regular container that lingers never exits,
    so the Job never completes; and a hold on SIGTERM the kubelet does not wait for ends in its SIGKILL."""
    found = []
    period = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD)
    for container in _all_containers(pod):
        name, argv = container["name"], _exitdir_command(container)
        ns = _parsed(argv) if argv[:1] == ["follow"] else None
        if ns is None:
            continue
        native = container in pod.get("initContainers", []) and container.get("restartPolicy") == "Always"
        if native and not ns.linger:
            found.append(
                f"{name}: a native sidecar (restartPolicy: Always) running `exitdir follow` must use "
                "--linger: it exits at the marker, the kubelet restarts it, it sees the marker and exits "
                "again, in a loop until the pod ends"
            )
        if ns.linger and container in pod["containers"]:
            found.append(
                f"{name}: --linger in a regular container of a Job: the follower never exits after the "
                "marker, so the pod never completes and the Job hangs; only a native sidecar may linger"
            )
        if ns.hold_on_term is not None and not period > ns.hold_on_term + ns.grace:
            found.append(
                f"{name}: --hold-on-term {ns.hold_on_term:g} plus --grace {ns.grace:g} s is not less than "
                f"the pod's terminationGracePeriodSeconds ({period}): its SIGKILL would end the hold"
            )
    return found


def _exit_directory(container: dict[str, Any], exit_volumes: set[str]) -> tuple[str, str] | None:
    """Where ``container``'s EXIT_DIR is: (volume, path inside it), or None if it is on none."""
    exit_dir = next((e.get("value") for e in container.get("env", []) if e["name"] == "EXIT_DIR"), None)
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if mount["name"] in exit_volumes and exit_dir is not None and (exit_dir + "/").startswith(root + "/"):
            inside = os.path.join(mount.get("subPath", ""), exit_dir[len(root) :].strip("/"))
            return mount["name"], os.path.normpath("/" + inside)
    return None


def _one_directory_problems(pod: dict[str, Any], exit_volumes: set[str]) -> list[str]:
    """Every exitdir container of the pod uses one exit directory: a follower watching another volume (a
    second emptyDir) would never see the leader's marker."""
    places = {
        c["name"]: place
        for c in _all_containers(pod)
        if c.get("image") == IMAGE and (place := _exit_directory(c, exit_volumes)) is not None
    }
    if len(set(places.values())) <= 1:
        return []
    leaders = [c["name"] for c in pod["containers"] if _exitdir_command(c)[:1] in (["lead"], ["demo"])]
    reference = places.get(leaders[0] if leaders else next(iter(places)))
    return [
        f"{name}: EXIT_DIR is in volume {volume} (at {path}), the leader's in volume {reference[0]} (at "
        f"{reference[1]}): they must share one exit directory"
        for name, (volume, path) in places.items()
        if reference is not None and (volume, path) != reference
    ]


def _exitdir_command(container: dict[str, Any]) -> list[str]:
    """The exitdir command line a container runs (its args), or [] for a shell script or another image."""
    if container.get("image") != IMAGE or container.get("command") is not None:
        return []
    return [str(arg) for arg in container.get("args", [])]


def _parsed(argv: list[str]) -> argparse.Namespace | None:
    try:
        return _cli._parser(argv).parse_args(argv)
    except (SystemExit, _cli._UsageError):
        return None  # said by _cli_problems


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name=VALUE`` or ``--name VALUE`` in a sidecar's args; None if absent."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _cloud_sql_proxy_ports(pod: dict[str, Any], flag: str, port_option: str, default: int) -> set[int]:
    """The ports (``port_option``, else ``default``) of the Cloud SQL Proxy containers started with
    ``flag``: an admin or health-check server that listens only when its flag is given."""
    return {
        int(_option(c.get("args", []), port_option) or default)
        for c in pod["containers"] + pod.get("initContainers", [])
        if _sidecar_image(c.get("image")) == CLOUD_SQL_PROXY and flag in c.get("args", [])
    }


def _program(container: dict[str, Any]) -> str | None:
    """The file name of the program a container runs: its command, or its image's entrypoint."""
    if container.get("command"):
        return os.path.basename(str(container["command"][0]))
    image = _sidecar_image(container.get("image"))
    return SIDECAR_PROGRAMS[image] if image is not None else None


def _user(pod: dict[str, Any], container: dict[str, Any]) -> object:
    return container.get("securityContext", {}).get(
        "runAsUser", pod.get("securityContext", {}).get("runAsUser")
    )


def _sidecar_problems(template: dict[str, Any]) -> list[str]:
    """What makes a stop action or a readiness wait of the pod's exitdir containers fail where the pod
    runs: an endpoint switched off, a flag the sidecar lacks, a process the follower cannot see or signal."""
    pod, meta = template["spec"], template.get("metadata", {})
    annotations, labels = meta.get("annotations", {}), meta.get("labels", {})
    found: list[str] = []
    for container in pod["containers"]:
        name, argv = container["name"], _exitdir_command(container)
        ns = _parsed(argv) if argv[:1] in (["lead"], ["follow"]) else None
        if ns is None:
            continue
        urls = [QUIT_PRESETS[q] for q in ns.quit or ()] + list(ns.post or ())
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            linkerd = (parts.port, parts.path) == (LINKERD_SHUTDOWN.port, LINKERD_SHUTDOWN.path)
            if linkerd and annotations.get("config.linkerd.io/proxy-admin-shutdown") != "enabled":
                found.append(
                    f"{name}: posts to Linkerd's {url}, which answers 404 unless the pod is annotated "
                    "config.linkerd.io/proxy-admin-shutdown: enabled"
                )
            cloud_sql = (parts.port, parts.path) == (CLOUD_SQL_QUIT.port, CLOUD_SQL_QUIT.path)
            served = _cloud_sql_proxy_ports(pod, "--quitquitquit", "--admin-port", 9091)
            if cloud_sql and parts.port not in served:
                found.append(
                    f"{name}: posts to {url}, but no cloud-sql-proxy container is started with "
                    "--quitquitquit on that port: nothing would listen there (absent, status 0) and the "
                    "proxy would keep the pod running"
                )
        if "envoy" in (ns.quit or ()) and "sidecar.istio.io/inject" in labels:
            found.append(
                f"{name}: --quit envoy in an Istio pod stops Envoy but not pilot-agent, which keeps "
                "istio-proxy running: use --quit istio"
            )
        served = _cloud_sql_proxy_ports(pod, "--health-check", "--http-port", 9090)
        if (
            "cloud-sql-proxy" in (getattr(ns, "wait_ready", None) or ())
            and CLOUD_SQL_READY.port not in served
        ):
            found.append(
                f"{name}: waits for {READY_PRESETS['cloud-sql-proxy']}, but no cloud-sql-proxy "
                "container is started with --health-check on that port: it would never be ready"
            )
        found.extend(_signal_problems(pod, container, ns))
    return found


def _signal_problems(pod: dict[str, Any], follower: dict[str, Any], ns: argparse.Namespace) -> list[str]:
    """``follow --process NAME`` sees and may signal its target, and the target's own status (which the
    kubelet reports, and which decides the Job) is 0 after the signal it gets."""
    names, pid_files = getattr(ns, "process", None) or [], getattr(ns, "pid_file", None) or []
    if not (names or pid_files):
        return []
    who = follower["name"]
    if pod.get("shareProcessNamespace") is not True:
        return [
            f"{who}: --process/--pid-file need shareProcessNamespace: true: each container has its own PID "
            "namespace otherwise, so nothing is found (absent) and the target keeps running"
        ]
    found = []
    for wanted in names:
        targets = [c for c in pod["containers"] if c is not follower and _program(c) == wanted]
        if not targets:
            programs = sorted(p for c in pod["containers"] if (p := _program(c)) is not None)
            found.append(f"{who}: --process {wanted} names no container's program ({', '.join(programs)})")
        for target in targets:
            if _user(pod, target) != _user(pod, follower) or _user(pod, target) is None:
                found.append(
                    f"{target['name']}: runs as user {_user(pod, target)}, {who} as {_user(pod, follower)}: "
                    "the signal would be refused (EPERM)"
                )
            zero = ns.signal == signal.SIGTERM and "--exit-zero-on-sigterm" in target.get("args", [])
            if _sidecar_image(target.get("image")) == CLOUD_SQL_PROXY and not zero:
                found.append(
                    f"{target['name']}: stopped by {who} with signal {int(ns.signal)}, not SIGTERM with "
                    "--exit-zero-on-sigterm: it would exit non-zero (143 for SIGTERM) and fail the Job"
                )
    return found


def _directory_problems(env: dict[str, str | None], mount_paths: list[str]) -> list[str]:
    """EXIT_DIR on the shared volume (its root or below it), and EXITDIR_LIVENESS_DIR beside it there."""
    exit_dir = env.get("EXIT_DIR")
    on_volume = [p for p in mount_paths if exit_dir is not None and (exit_dir + "/").startswith(p + "/")]
    if mount_paths and not on_volume:
        return [f"EXIT_DIR is {exit_dir!r}, the volume is at {', '.join(mount_paths)}"]
    live = env.get("EXITDIR_LIVENESS_DIR")
    if live is None or exit_dir is None:
        return []
    if not live.startswith(on_volume[0] + "/"):
        return [f"EXITDIR_LIVENESS_DIR {live!r} is not on the exit directory's volume ({on_volume[0]})"]
    try:
        resolve_liveness_dir(live, exit_dir)
    except exitdir.ExitDirError as error:
        return [str(error)]
    return []


def _cli_problems(command: list[str] | None, args: list[str]) -> list[str]:
    """The image's entrypoint is `exitdir`: its arguments must parse as an exitdir command line. A shell
    (``command: ["sh", "-c"]``) may choose among exitdir command lines, each of which must parse."""
    if command == ["sh", "-c"] and len(args) == 1:
        lines = [
            shlex.split(line)[2:] for line in args[0].splitlines() if line.strip().startswith("exec exitdir ")
        ]
        if not lines:
            return ["its shell script runs no `exec exitdir ...`"]
        return [problem for line in lines for problem in _cli_problems(None, line)]
    if command is not None:
        return [f"command {command!r} replaces the exitdir entrypoint"]
    try:
        _cli._parser(args).parse_args(args)
    except (SystemExit, _cli._UsageError):
        return [f"args {args!r} are not a valid exitdir command line"]
    return []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def _claims(path: Path) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc for doc in _documents(path) if doc["kind"] == "PersistentVolumeClaim"
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_has_none_of_the_problems_the_validator_misses(path: Path) -> None:
    assert problems(_load(path), _claims(path)) == []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_described_in_the_readme_or_the_sidecars_page(path: Path) -> None:
    pages = (ROOT / "README.md").read_text() + (ROOT / "docs" / "sidecars.md").read_text()
    assert f"deploy/kubernetes/{path.name}" in pages


def test_the_issue_s_jobs_are_shipped() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "job.yaml",
        "job-wrapped-sidecar.yaml",
        "job-failing-leader.yaml",
        "indexed-job-rwx.yaml",  # issue 12: pod 0 leads, the others follow, across nodes
        # issue 13: sidecars exitdir stops from outside (docs/sidecars.md)
        "job-istio.yaml",
        "job-linkerd.yaml",
        "job-cloud-sql-proxy.yaml",
        "job-shared-pid.yaml",
        "job-native-sidecar.yaml",  # issue 14: follow --linger in a native sidecar
    }


NATIVE = ROOT / "deploy" / "kubernetes" / "job-native-sidecar.yaml"


def _broken_lifecycle(edit: str) -> dict[str, Any]:
    """The native-sidecar Job with one lifecycle policy wrong, which the schema lets through."""
    job = copy.deepcopy(_load(NATIVE))
    pod = job["spec"]["template"]["spec"]
    (helper,) = pod["initContainers"]
    main = pod["containers"][0]
    if edit == "no_linger":  # the restart loop
        helper["args"].remove("--linger")
    elif edit == "stop_only_no_linger":
        helper["args"] = ["follow", "--post", "http://127.0.0.1:8000/quit"]
    elif edit == "regular_lingers":  # the helper as a regular sidecar of the Job, still lingering
        del helper["restartPolicy"]
        pod["containers"].append(pod.pop("initContainers")[0])
    elif edit == "hold_too_long":  # 25 + 5 s of grace is not less than the default 30 s
        helper["args"][1:1] = ["--hold-on-term", "25"]
    elif edit == "hold_beyond_the_period":
        pod["terminationGracePeriodSeconds"] = 60
        helper["args"][1:1] = ["--hold-on-term=60"]
    elif edit == "main_holds_forever":
        main["args"] = ["follow", "--hold-on-term", "inf", "--", "sleep", "10"]
    return job


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("no_linger", "helper: a native sidecar (restartPolicy: Always) running `exitdir follow` must use"),
        ("stop_only_no_linger", "helper: a native sidecar (restartPolicy: Always) running `exitdir follow`"),
        ("regular_lingers", "helper: --linger in a regular container of a Job: the follower never exits"),
        ("hold_too_long", "helper: --hold-on-term 25 plus --grace 5 s is not less than the pod's "),
        ("hold_beyond_the_period", "helper: --hold-on-term 60 plus --grace 5 s is not less than the pod's "),
        ("main_holds_forever", "main: --hold-on-term inf plus --grace 10 s is not less than the pod's "),
    ],
)
def test_the_lifecycle_checks_catch_what_they_are_for(edit: str, expected: str) -> None:
    job = _broken_lifecycle(edit)
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[0], strict=True)  # the validator lets it through
    assert any(p.startswith(expected) for p in problems(job)), problems(job)


def test_a_hold_within_the_grace_period_passes() -> None:
    job = _broken_lifecycle("hold_beyond_the_period")
    job["spec"]["template"]["spec"]["initContainers"][0]["args"][1] = "--hold-on-term=54.5"
    assert problems(job) == []


INDEXED = ROOT / "deploy" / "kubernetes" / "indexed-job-rwx.yaml"


def _broken_indexed(edit: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    job, claims = copy.deepcopy(_load(INDEXED)), copy.deepcopy(_claims(INDEXED))
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    if edit == "rwo":
        claims["exitdir-shared"]["spec"]["accessModes"] = ["ReadWriteOnce"]
    elif edit == "liveness_inside":
        env["EXITDIR_LIVENESS_DIR"]["value"] = env["EXIT_DIR"]["value"] + "/liveness"
    elif edit == "liveness_elsewhere":
        env["EXITDIR_LIVENESS_DIR"]["value"] = "/tmp/liveness"
    elif edit == "script":
        container["args"] = [container["args"][0].replace("--exit-code leader", "--exit-code launcher")]
    return job, claims


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("rwo", "volume shared: its claim is not ReadWriteMany"),
        ("liveness_inside", "node: liveness directory /shared/runs/$(JOB_UID)/exit/liveness is inside"),
        ("liveness_elsewhere", "node: EXITDIR_LIVENESS_DIR '/tmp/liveness' is not on the exit directory's"),
        ("script", "node: args ['follow', '--exit-code', 'launcher'"),
    ],
)
def test_the_checks_catch_what_they_are_for_across_nodes(edit: str, expected: str) -> None:
    job, claims = _broken_indexed(edit)
    assert any(p.startswith(expected) for p in problems(job, claims)), problems(job, claims)


def _broken(edit: str) -> dict[str, Any]:
    job = copy.deepcopy(_load(ROOT / "deploy" / "kubernetes" / "job.yaml"))
    pod = job["spec"]["template"]["spec"]
    busy = pod["containers"][1]
    if edit == "restart":
        pod["restartPolicy"] = "Sometimes"
    elif edit == "exit_dir":
        busy["env"] = [{"name": "EXIT_DIR", "value": "/tmp/elsewhere"}]
    elif edit == "image":
        busy["image"] = "python:3.12"
    elif edit == "root":
        del busy["securityContext"]["readOnlyRootFilesystem"]
    elif edit == "args":
        busy["args"] = ["demo", "bsuy"]
    return job


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("restart", "restartPolicy 'Sometimes'"),
        ("exit_dir", "busy: EXIT_DIR is '/tmp/elsewhere', the volume is at /var/exitdir"),
        ("image", "busy: image 'python:3.12' is not"),
        ("root", "busy: readOnlyRootFilesystem is not true"),
        ("args", "busy: args ['demo', 'bsuy'] are not a valid exitdir command line"),
    ],
)
def test_the_checks_catch_what_they_are_for(edit: str, expected: str) -> None:
    job = _broken(edit)
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)  # the validator lets it through
    assert any(p.startswith(expected) for p in problems(job)), problems(job)


def _containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}


def _broken_sidecar(edit: str) -> dict[str, Any]:
    """A sidecar manifest with one thing wrong that the pod would only show by hanging or failing."""
    manifest = {
        "no_shutdown_annotation": "job-linkerd.yaml",
        "envoy_in_istio": "job-istio.yaml",
        "no_quitquitquit": "job-cloud-sql-proxy.yaml",
        "admin_port": "job-cloud-sql-proxy.yaml",
        "no_health_check": "job-cloud-sql-proxy.yaml",
        "other_directory": "job-cloud-sql-proxy.yaml",
        "unknown_image": "job-cloud-sql-proxy.yaml",
    }.get(edit, "job-shared-pid.yaml")
    job = copy.deepcopy(_load(ROOT / "deploy" / "kubernetes" / manifest))
    template, pod = job["spec"]["template"], job["spec"]["template"]["spec"]
    containers = _containers(job)
    if edit == "no_shutdown_annotation":
        del template["metadata"]["annotations"]["config.linkerd.io/proxy-admin-shutdown"]
    elif edit == "envoy_in_istio":
        containers["stop-proxy"]["args"] = ["follow", "--quit", "envoy"]
    elif edit == "no_quitquitquit":
        containers["cloud-sql-proxy"]["args"].remove("--quitquitquit")
    elif edit == "admin_port":
        containers["cloud-sql-proxy"]["args"].append("--admin-port=9092")
    elif edit == "no_health_check":
        containers["cloud-sql-proxy"]["args"].remove("--health-check")
    elif edit == "other_directory":
        pod["volumes"].append({"name": "other", "emptyDir": {}})
        containers["stop-proxy"]["volumeMounts"] = [{"name": "other", "mountPath": "/var/exitdir"}]
    elif edit == "unknown_image":
        containers["cloud-sql-proxy"]["image"] = "docker.io/library/busybox:1.36"
    elif edit == "no_shared_pids":
        del pod["shareProcessNamespace"]
    elif edit == "wrong_name":
        containers["stop-proxy"]["args"] = ["follow", "--process", "cloud_sql_proxy"]
    elif edit == "other_user":
        containers["cloud-sql-proxy"]["securityContext"]["runAsUser"] = 1000
    elif edit == "exits_143":
        containers["cloud-sql-proxy"]["args"].remove("--exit-zero-on-sigterm")
    elif edit == "sigint":
        containers["stop-proxy"]["args"] = ["follow", "--process", "cloud-sql-proxy", "--signal", "INT"]
    return job


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            "no_shutdown_annotation",
            "stop-proxy: posts to Linkerd's http://127.0.0.1:4191/shutdown, which answers",
        ),
        ("envoy_in_istio", "stop-proxy: --quit envoy in an Istio pod stops Envoy but not pilot-agent"),
        (
            "no_quitquitquit",
            "stop-proxy: posts to http://127.0.0.1:9091/quitquitquit, but no cloud-sql-proxy",
        ),
        ("admin_port", "stop-proxy: posts to http://127.0.0.1:9091/quitquitquit, but no cloud-sql-proxy"),
        ("no_health_check", "main: waits for http://127.0.0.1:9090/readiness, but no cloud-sql-proxy"),
        (
            "other_directory",
            "stop-proxy: EXIT_DIR is in volume other (at /), the leader's in volume exit-dir",
        ),
        ("unknown_image", "cloud-sql-proxy: image 'docker.io/library/busybox:1.36' is not"),
        ("no_shared_pids", "stop-proxy: --process/--pid-file need shareProcessNamespace: true"),
        ("wrong_name", "stop-proxy: --process cloud_sql_proxy names no container's program"),
        ("other_user", "cloud-sql-proxy: runs as user 1000, stop-proxy as 65532"),
        ("exits_143", "cloud-sql-proxy: stopped by stop-proxy with signal 15, not SIGTERM with --exit-zero"),
        ("sigint", "cloud-sql-proxy: stopped by stop-proxy with signal 2, not SIGTERM with --exit-zero"),
    ],
)
def test_the_sidecar_checks_catch_what_they_are_for(edit: str, expected: str) -> None:
    job = _broken_sidecar(edit)
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)  # the validator lets it through
    assert any(p.startswith(expected) for p in problems(job)), problems(job)


def _yaml_blocks(markdown: Path) -> list[dict[str, Any]]:
    text = markdown.read_text()
    blocks = text.split("```yaml\n")[1:]
    return [yaml.safe_load(block.split("```", 1)[0]) for block in blocks]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_native_sidecar_example_in_the_docs_validates(version: str) -> None:
    (job,) = _yaml_blocks(ROOT / "docs" / "kubernetes.md")
    kubernetes_validate.validate(job, version, strict=True)
    sidecar = job["spec"]["template"]["spec"]["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert _cli_problems(None, sidecar["args"]) == []
    assert _lifecycle_problems(job["spec"]["template"]["spec"]) == []  # it lacked --linger: a restart loop
