"""The job agent that runs inside each User-Mode Linux node: how the host runs a command on a node.

The node's root is the host's `/` (hostfs), so the host drops a job file into the node's control directory
and this agent, polling that directory, runs it and writes back its output and status:

- ``NAME.job``: JSON ``{"argv": [...], "env": {...}}``, written by the host through a temporary name;
- ``NAME.out`` and ``NAME.err``: the command's stdout and stderr, written as it runs;
- ``NAME.status``: its exit status (negative: killed by that signal), written through a temporary name;
- ``NAME.kill``: the host asks for the command's process group to be SIGKILLed.

The agent runs until the node halts: it is the node's init, whose end would panic the kernel.

The agent only ever opens names it has just seen in a listing: the node caches failed lookups on hostfs, so
looking up a name before the host creates it would hide that file from the node for good.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL = 0.02  # how often the control directory is listed


def _publish(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.rename(path)


def _start(ctl: Path, name: str) -> subprocess.Popen[bytes] | None:
    spec = json.loads((ctl / f"{name}.job").read_text())
    (ctl / f"{name}.job").rename(ctl / f"{name}.taken")
    env = {**os.environ, **spec.get("env", {})}
    with open(ctl / f"{name}.out", "wb") as out, open(ctl / f"{name}.err", "wb") as err:
        try:
            return subprocess.Popen(
                spec["argv"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            err.write(f"node agent: cannot start {spec['argv']}: {error}\n".encode())
    _publish(ctl / f"{name}.status", "127")
    return None


def main(argv: list[str]) -> int:
    ctl = Path(argv[1])
    running: dict[str, subprocess.Popen[bytes]] = {}
    _publish(ctl / "agent.ready", str(os.getpid()))
    while True:
        names = os.listdir(ctl)
        for entry in sorted(names):
            if entry.endswith(".job"):
                proc = _start(ctl, entry[: -len(".job")])
                if proc is not None:
                    running[entry[: -len(".job")]] = proc
            elif entry.endswith(".kill"):
                proc = running.get(entry[: -len(".kill")])
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                os.unlink(ctl / entry)
        for name, proc in list(running.items()):
            code = proc.poll()
            if code is not None:
                _publish(ctl / f"{name}.status", str(code))
                del running[name]
        time.sleep(POLL)  # the poll interval of a polling loop, not a synchronisation


if __name__ == "__main__":
    sys.exit(main(sys.argv))
