"""follow's lifecycle policies (issue 14) in a real pod on podman: a pod deleted while its app drains keeps
the app's proxy (`follow --hold-on-term`) until the app is done, and both end with 0.

The pod is a test fixture (e2e/lifecycle/drain.yaml), played like the shipped Jobs (test_kubernetes.py).
What podman cannot play: native sidecars (an init container with restartPolicy: Always): podman 4.3 runs
every init container to completion before the pod's containers start (docs/kubernetes.md).
"""

from __future__ import annotations

import time

import kubernetes_validate
import yaml

from conftest import ROOT

from _podman import Play

DRAIN = ROOT / "e2e" / "lifecycle" / "drain.yaml"
GENEROUS = 60  # a pod's whole life, on a slow, shared machine


def test_the_fixture_is_a_valid_job() -> None:
    doc = yaml.safe_load(DRAIN.read_text())
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    assert doc["metadata"]["name"].startswith("life14-")  # podman names the pods and containers after it


def test_a_pod_stopped_while_its_app_drains_keeps_the_proxy_until_the_app_is_done(play: Play) -> None:
    pod = play(DRAIN)
    deadline = time.monotonic() + GENEROUS
    while "[App] serving" not in pod.texts("app"):  # the app runs, so the proxy answered --wait-http
        assert time.monotonic() < deadline, pod.describe()
        time.sleep(0.1)  # a poll of the container's log for a state, not a synchronisation by time
    pod.stop(timeout=60)  # SIGTERM to every container at once, SIGKILL after 60 s: the pod deleted
    assert (pod.wait("app", timeout=GENEROUS), pod.wait("proxy", timeout=GENEROUS)) == (0, 0), pod.describe()

    app = pod.texts("app")
    drained = [f"[App] drained request {n} through the proxy" for n in range(1, 5)]
    assert app[app.index("[App] SIGTERM: draining") + 1 :] == [*drained, "[App] done"], app
    # The proxy's log, in the order it was written: the SIGTERM held, the app's drain served after it, then
    # the app's marker (written once the app had ended), and only then the proxy stopped.
    proxy = pod.texts("proxy")
    held = proxy.index("exitdir: SIGTERM: holding python3 until the marker appears, at most 30 s")
    served = [i for i, line in enumerate(proxy) if "GET /?drain=" in line]
    stopping = next(i for i, line in enumerate(proxy) if line.startswith("exitdir: leader signalled"))
    assert len(served) == 4, proxy
    assert held < served[0], proxy
    assert served[-1] < stopping, proxy
    assert "exitFile: code 0" in proxy[stopping], proxy
    assert not [line for line in proxy if "Traceback" in line or "SIGKILL" in line], proxy
