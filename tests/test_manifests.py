"""The shipped Kubernetes manifests: valid for the API server, and right in what the validator cannot see.

They are also run for real, on podman, by the end-to-end tests (`make e2e`, e2e/test_kubernetes.py).
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import exitdir
from exitdir import _cli
from exitdir._config import resolve_liveness_dir

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
IMAGE = f"exitdir:{exitdir.__version__}"
# The oldest Kubernetes still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())


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
    for container in pod["containers"]:
        name = container["name"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] in exit_volumes]
        if not mounts:
            found.append(f"{name}: does not mount the exit directory volume")
        found.extend(f"{name}: {p}" for p in _directory_problems(env, [m["mountPath"] for m in mounts]))
        if container.get("image") != IMAGE:
            found.append(f"{name}: image {container.get('image')!r} is not {IMAGE}")
        security = container.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: capabilities are not all dropped")
        found.extend(
            f"{name}: {p}" for p in _cli_problems(container.get("command"), container.get("args", []))
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
def test_every_manifest_is_described_in_the_readme(path: Path) -> None:
    assert f"deploy/kubernetes/{path.name}" in (ROOT / "README.md").read_text()


def test_the_issue_s_jobs_are_shipped() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "job.yaml",
        "job-wrapped-sidecar.yaml",
        "job-failing-leader.yaml",
        "indexed-job-rwx.yaml",  # issue 12: pod 0 leads, the others follow, across nodes
    }


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
