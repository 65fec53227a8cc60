"""The shipped Kubernetes manifests: valid for the API server, and right in what the validator cannot see.

They are also run for real, on podman, by the end-to-end tests (`make e2e`, e2e/test_kubernetes.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import exitdir
from exitdir import _cli

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
IMAGE = f"exitdir:{exitdir.__version__}"
# The oldest Kubernetes still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def problems(job: dict[str, Any]) -> list[str]:
    """What kubernetes-validate lets through but would break the Job or its exit directory."""
    found: list[str] = []
    pod = job["spec"]["template"]["spec"]
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):  # a Job rejects Always; typos pass schema
        found.append(f"restartPolicy {pod.get('restartPolicy')!r}: a Job needs Never or OnFailure")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        found.append("the pod does not set runAsNonRoot: true")
    exit_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    if not exit_volumes:
        found.append("no emptyDir volume to share the exit directory")
    for container in pod["containers"]:
        name = container["name"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] in exit_volumes]
        if not mounts:
            found.append(f"{name}: does not mount the exit directory volume")
        for mount in mounts:
            if env.get("EXIT_DIR") != mount["mountPath"]:
                found.append(
                    f"{name}: EXIT_DIR is {env.get('EXIT_DIR')!r}, the volume is at {mount['mountPath']}"
                )
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


def _cli_problems(command: list[str] | None, args: list[str]) -> list[str]:
    """The image's entrypoint is `exitdir`: its arguments must parse as an exitdir command line."""
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
    kubernetes_validate.validate(_load(path), version, strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_has_none_of_the_problems_the_validator_misses(path: Path) -> None:
    assert problems(_load(path)) == []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_described_in_the_readme(path: Path) -> None:
    assert f"deploy/kubernetes/{path.name}" in (ROOT / "README.md").read_text()


def test_the_issue_s_three_jobs_are_shipped() -> None:
    assert {p.name for p in MANIFESTS} >= {"job.yaml", "job-wrapped-sidecar.yaml", "job-failing-leader.yaml"}


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
