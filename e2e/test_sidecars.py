"""Sidecars that cannot be wrapped, on a real container runtime (issue 13): a stop-only follower stops them
once the leader is done, and a leader waits for them before its program starts.

Stand-in: the sidecar is caddy (Debian's package, a Go web server) in an image built FROM scratch with only
its binary, the libraries ``ldd`` lists for it and two configs (e2e/caddy/, the ``caddy_image`` fixture):
no Python and no shell, like the distroless images of Cloud SQL Proxy and Linkerd's proxy. Its admin API's
``POST /stop`` (127.0.0.1:2019) makes it exit, the same shape as Envoy's and Istio's ``POST /quitquitquit``.
The pods are e2e/pods/*.yaml, test fixtures played like the shipped Jobs (test_kubernetes.py).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import CADDY, CADDY_CONFIGS, ROOT

from _podman import Play, PlayedPod, Podman, assert_ended, shared_libraries

PODS = ROOT / "e2e" / "pods"
SITE = "http://127.0.0.1:8080/"
STOP = "http://127.0.0.1:2019/stop"
WAITING = f"exitdir: waiting for {SITE} before starting python3"
FETCHED = ["[Main] fetched 'hello from caddy'"] * 3 + ["[Main] done"]
GENEROUS = 60  # a pod's whole life, on a slow, shared machine


def _caddy_log(pod: PlayedPod) -> list[dict[str, Any]]:
    """caddy's log: one JSON object per line, ``ts`` in seconds since the epoch by caddy's own clock."""
    return [json.loads(line) for line in pod.texts("caddy") if line.startswith("{")]


def _events(log: list[dict[str, Any]], msg: str, **fields: Any) -> list[dict[str, Any]]:
    return [event for event in log if event["msg"] == msg and fields.items() <= event.items()]


def _marker(pod: PlayedPod) -> dict[str, Any]:
    """The one marker in the pod's exit directory, as its leader wrote it (read on the volume itself)."""
    (mount,) = [m for m in pod.inspect("main")["Mounts"] if m["Destination"] == "/var/exitdir"]
    (path,) = [p for p in Path(mount["Source"]).iterdir() if not p.name.startswith(".")]
    doc: dict[str, Any] = json.loads(path.read_text())
    doc["seconds"] = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp()
    return doc


def _stopped_after_the_marker(pod: PlayedPod, marker: dict[str, Any]) -> None:
    """caddy was told to stop once, by POST /stop after the marker was written, and exited 0 on its own:
    its own log says so, and no signal reached it."""
    log = _caddy_log(pod)
    (stop,) = _events(log, "received request", method="POST", uri="/stop")
    assert stop["ts"] > marker["seconds"]
    (done,) = _events(log, "shutdown complete", logger="admin.api")
    assert done["exit_code"] == 0
    assert not [event for event in log if "signal" in event], log
    assert pod.texts("stopper") == [f"exitdir: {STOP}: stopped: HTTP 200 OK"]


@pytest.mark.parametrize("path", sorted(PODS.glob("*.yaml")), ids=lambda path: path.name)
def test_the_pods_are_valid_jobs(path: Path) -> None:
    """The fixtures are what a cluster would accept (the shipped Jobs are checked in tests/)."""
    doc = yaml.safe_load(path.read_text())
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    assert doc["metadata"]["name"].startswith("sidecar-")  # podman names the pods and containers after it


def test_caddy_image_has_no_shell_and_no_python(podman: Podman, caddy_image: str) -> None:
    """caddy runs in it, nothing else can be started, and its layers hold exactly caddy, the libraries
    ``ldd`` lists for it (libc, libzstd, the loader on this machine) and the two configs."""
    image = f"localhost/{caddy_image}"
    assert re.match(r"v?2\.\d+", podman("run", "--rm", "--network", "none", image, "version"))
    for program in ("/bin/sh", "sh", "/usr/bin/python3", "python3"):
        said = podman(
            "run", "--rm", "--network", "none", "--entrypoint", program, image, check=False, merge=True
        )
        assert "no such file or directory" in said or "not found in $PATH" in said, said
    binary = shutil.which("caddy")
    assert binary is not None  # the caddy_image fixture has checked
    libraries = {str(library).lstrip("/") for library in shared_libraries(Path(binary))}
    assert {Path(library).name.split(".so")[0] for library in libraries} >= {"libc", "libzstd"}
    assert podman.image_files(image) == {
        "usr/bin/caddy",
        *libraries,
        *(f"etc/caddy/{config}" for config in CADDY_CONFIGS),
    }


def test_a_stop_only_follower_posts_to_the_sidecars_quit_endpoint_after_the_marker(
    play: Play, caddy_image: str
) -> None:
    """Stand-in: caddy's POST /stop for a distroless sidecar's quit endpoint (see the module docstring)."""
    pod = play(PODS / "sidecar-post.yaml")
    assert_ended(pod, GENEROUS, main=0, stopper=0, caddy=0)
    # `lead` says it waits only when caddy is not up at its first probe: here it may already be.
    assert pod.texts("main") in ([WAITING, *FETCHED], FETCHED)
    marker = _marker(pod)
    assert marker["code"] == 0
    _stopped_after_the_marker(pod, marker)


def test_b_in_a_shared_pid_namespace_the_follower_stops_caddy_by_name_with_sigterm(
    play: Play, caddy_image: str
) -> None:
    """shareProcessNamespace: true, ``follow --process caddy``. caddy handles SIGTERM: it stops its apps
    and exits 0, so its container shows 0 (not 143); the follower, which is not caddy's parent, can only
    say that it ended after SIGTERM."""
    pod = play(PODS / "sidecar-process.yaml")
    assert_ended(pod, GENEROUS, main=0, stopper=0, caddy=0)
    # `lead` says it waits only when caddy is not up at its first probe: here it may already be.
    assert pod.texts("main") in ([WAITING, *FETCHED], FETCHED)
    marker = _marker(pod)
    (stopped,) = pod.texts("stopper")
    # a pid of the pod's shared namespace, where the infrastructure container's init is 1
    assert re.fullmatch(r"exitdir: caddy \(pid \d+\): stopped: ended after SIGTERM", stopped)
    log = _caddy_log(pod)
    (terminating,) = _events(log, "shutting down apps, then terminating", signal="SIGTERM")
    assert terminating["ts"] > marker["seconds"]
    (done,) = _events(log, "shutdown complete", signal="SIGTERM")
    assert done["exit_code"] == 0
    assert not _events(log, "received request")  # no one posted: the signal stopped it


def test_c_the_leader_waits_for_a_sidecar_that_comes_up_late(play: Play, caddy_image: str) -> None:
    """``lead --wait-http``: caddy runs its admin API only until `loader` posts the site's config, 1.5 s
    after it has seen the leader running (and so waiting), since caddy's image has no shell to delay it."""
    pod = play(PODS / "sidecar-late.yaml")
    assert_ended(pod, GENEROUS, main=0, stopper=0, caddy=0, loader=0)
    assert pod.texts("loader") == ["[Loader] the leader is waiting", "[Loader] site loaded"]
    main = pod.logs("main")
    assert [line.text for line in main] == [WAITING, *FETCHED]
    waiting, first_fetch = main[0].seconds, main[1].seconds
    log = _caddy_log(pod)
    (load,) = _events(log, "received request", method="POST", uri="/load")
    (up,) = _events(log, "server running", name="site")
    # The leader said it was waiting before the site was loaded; it fetched only once the site was up.
    assert waiting < load["ts"] <= up["ts"] < first_fetch
    _stopped_after_the_marker(pod, _marker(pod))


def test_c_the_loaders_config_is_the_images_site_config() -> None:
    """The loader of sidecar-late.yaml posts the same site the image's site.json serves."""
    job = yaml.safe_load((PODS / "sidecar-late.yaml").read_text())
    (loader,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "loader"]
    (site,) = [e["value"] for e in loader["env"] if e["name"] == "SITE"]
    assert json.loads(site) == json.loads((CADDY / "site.json").read_text())


def test_d_a_sidecar_never_up_fails_the_leader_within_its_timeout_and_the_pod_still_ends(
    play: Play, caddy_image: str
) -> None:
    """sidecar-late.yaml without its loader: caddy's site never comes up, only its admin API."""

    def never_up(job: dict[str, Any]) -> None:
        spec = job["spec"]["template"]["spec"]
        spec["containers"] = [c for c in spec["containers"] if c["name"] != "loader"]
        (main,) = [c for c in spec["containers"] if c["name"] == "main"]
        main["args"][main["args"].index("--wait-timeout") + 1] = "3"

    pod = play(PODS / "sidecar-late.yaml", edit=never_up)
    assert_ended(pod, GENEROUS, main=1, stopper=0, caddy=0)
    main = pod.logs("main")
    reason = f"python3 not started: not ready within 3 s: {SITE}: connection refused"
    assert [line.text for line in main] == [WAITING, f"exitdir: error: {reason}"]  # no [Main]: never ran
    assert 2 < main[1].seconds - main[0].seconds < 3 + 10  # it waited out its 3 s, and not much longer
    marker = _marker(pod)
    assert (marker["code"], marker["reason"]) == (1, reason)
    assert not _events(_caddy_log(pod), "server running")
    _stopped_after_the_marker(pod, marker)
