"""The shipped Kubernetes manifests, run on a real container runtime (podman) with our image.

Each test plays a Job's pod exactly as written in deploy/kubernetes/, security contexts included, and checks
what `kubectl get job` would report: every container's exit status, and that the pod ends.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import MANIFESTS

from _podman import Play, PlayedPod, Podman, assert_ended, pod_from_job

WORK_SECONDS = 5
GENEROUS = 60  # a pod's whole life, on a slow, shared machine
# As Go's time.Time.String() prints time.Now(), its monotonic reading included (m=+S, 9 decimals).
TICK = re.compile(r"^\[Busy\] Tick at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [+-]\d{4} \S+ m=[+-]\d+\.\d{9}$")


def test_the_seeds_job_completes_because_busy_exits_when_work_is_done(play: Play) -> None:
    pod = play("job.yaml")
    assert_ended(pod, GENEROUS, work=0, busy=0)

    work, busy = pod.logs("work"), pod.logs("busy")
    assert [line.text for line in work] == ["[Work] Doing work...", "[Work] Exiting..."]
    *ticks, last = [line.text for line in busy]
    assert last == "[Busy] Exiting..."
    assert all(TICK.match(tick) for tick in ticks), ticks
    assert WORK_SECONDS * 2 - 2 <= len(ticks) <= WORK_SECONDS * 2 + 1  # one tick per 500 ms of work
    # busy leaves when the marker appears, not at its next tick: well within a second of work's end.
    stopped_after = busy[-1].seconds - work[-1].seconds
    assert 0 <= stopped_after < 1.0, stopped_after


def test_without_exit_dir_busy_never_finishes_which_is_the_problem_solved(play: Play) -> None:
    def unset_exit_dir_on_busy(job: dict[str, Any]) -> None:
        for container in job["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "busy":
                container["env"] = [e for e in container["env"] if e["name"] != "EXIT_DIR"]

    pod = play("job.yaml", edit=unset_exit_dir_on_busy)
    assert pod.wait("work", timeout=GENEROUS) == 0
    ticks_when_work_ended = len(pod.texts("busy"))
    with pytest.raises(TimeoutError):
        pod.wait("busy", timeout=5)  # a Job would hang here forever
    assert pod.running("busy")
    assert len(pod.texts("busy")) > ticks_when_work_ended  # still ticking, not stuck
    assert pod.pod_state() == "Degraded"  # podman: some containers exited, some running (Kubernetes: Running)
    # Deleting the pod sends SIGTERM to busy, PID 1 of its container: it handles it and exits 143 at once,
    # instead of being SIGKILLed (137) when the grace period runs out.
    pod.stop(timeout=30)
    assert pod.wait("busy", timeout=GENEROUS) == 143


def test_wrapped_sidecar_job_completes_and_the_helper_reports_zero(play: Play) -> None:
    pod = play("job-wrapped-sidecar.yaml")
    assert_ended(pod, GENEROUS, main=0, helper=0)

    main = pod.texts("main")
    assert main.count("[Main] done") == 1
    assert len([line for line in main if line.startswith("[Main] fetched ")]) == 3
    helper = "\n".join(pod.texts("helper"))
    assert '"GET / HTTP/1.1" 200' in helper  # http.server really served the leader
    assert "stopping python3" in helper
    assert "SIGTERM" in helper


def test_failing_leader_fails_the_job_and_each_policy_reports_as_documented(play: Play) -> None:
    pod = play("job-failing-leader.yaml")
    assert_ended(pod, GENEROUS, main=3, helper=0, **{"helper-reports-leader": 3})
    assert pod.texts("main")[0] == "[Main] 2 of 40 tests failed"


def test_image_is_non_root_with_exitdir_as_entrypoint(podman: Podman, image: str) -> None:
    config = json.loads(podman("image", "inspect", f"localhost/{image}"))[0]["Config"]
    assert config["User"] == "65532:65532"  # numeric, so runAsNonRoot can check it without /etc/passwd
    assert config["Entrypoint"] == ["exitdir"]
    assert podman(
        "run", "--rm", "--read-only", "--network", "none", f"localhost/{image}", "--version"
    ).startswith("exitdir ")


def test_pods_run_with_the_manifests_security_context(play: Play) -> None:
    pod = play("job.yaml")
    for container in ("work", "busy"):
        state = pod.inspect(container)
        assert state["HostConfig"]["ReadonlyRootfs"] is True
        assert state["EffectiveCaps"] in (None, [])
        assert "no-new-privileges" in state["HostConfig"]["SecurityOpt"]
        assert state["Config"]["User"].split(":")[0] == "65532"
    assert_ended(pod, GENEROUS, work=0, busy=0)


def _as_the_kubelet_sets(env: list[dict[str, Any]], given: dict[str, str]) -> list[dict[str, Any]]:
    """A container's environment with what the Job controller and the kubelet provide and podman 4.3 does
    not: ``given`` (the completion index, and the downward API's value for the Job's uid label), and each
    ``$(NAME)`` in a value replaced by an earlier variable's value, as the kubelet expands them."""
    values = dict(given)
    done = [{"name": "JOB_COMPLETION_INDEX", "value": given["JOB_COMPLETION_INDEX"]}]
    for entry in env:
        value = values.get(entry["name"]) or re.sub(
            r"\$\((\w+)\)", lambda match: values.get(match.group(1), match.group(0)), entry.get("value", "")
        )
        values[entry["name"]] = value
        done.append({"name": entry["name"], "value": value})
    return done


def test_indexed_job_pod_0_leads_and_the_other_pods_follow_through_a_shared_claim(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    """deploy/kubernetes/indexed-job-rwx.yaml, as the Job controller would run it: three pods with their
    JOB_COMPLETION_INDEX and the Job's uid label, sharing the claim's volume. Stand-ins: the pods run on one
    machine, so the claim is a podman volume rather than NFS (the two-kernel rig in test_multinode.py runs
    the same commands across real NFS and SMB); and this test plays the Job controller. The workers start
    first, before their exit directory exists, as pods scheduled in any order do."""
    docs = [doc for doc in yaml.safe_load_all((MANIFESTS / "indexed-job-rwx.yaml").read_text()) if doc]
    (job,) = [doc for doc in docs if doc["kind"] == "Job"]
    suffix = uuid.uuid4().hex[:8]
    claim = f"exitdir-shared-{suffix}"
    pods: list[PlayedPod] = []
    try:
        for index in (1, 2, 0):
            edited = copy.deepcopy(job)
            spec = edited["spec"]["template"]["spec"]
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"] = claim
            for container in spec["containers"]:
                container["env"] = _as_the_kubelet_sets(
                    container["env"], {"JOB_COMPLETION_INDEX": str(index), "JOB_UID": suffix}
                )
            manifest = pod_from_job(edited, f"{suffix}-{index}")
            manifest["metadata"]["labels"] = {"batch.kubernetes.io/controller-uid": suffix}
            path = tmp_path / f"{manifest['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(manifest))
            pods.append(PlayedPod(podman, path, manifest["metadata"]["name"], ["node"]))
            podman("kube", "play", "--network", "none", str(path))
        codes = [pod.wait("node", timeout=GENEROUS) for pod in pods]
        worker_1, worker_2, launcher = pods
        assert codes == [0, 0, 0], "\n".join(pod.describe() for pod in pods)
        assert launcher.texts("node") == ["[launcher] working", "[launcher] done"]
        for worker in (worker_1, worker_2):
            said = "\n".join(worker.texts("node"))
            assert "stopping python3" in said, worker.describe()
        runs = podman(
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{claim}:/shared",
            f"localhost/{image}",
            "status",
            "--dir",
            f"/shared/runs/{suffix}/exit",
            "--json",
        )
        (marker,) = json.loads(runs)["markers"]  # in this run's own directory
        assert marker["code"] == 0
    finally:
        for pod in pods:
            pod.down()
        podman("volume", "rm", "-f", claim, check=False)
