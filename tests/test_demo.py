"""The seed's local demo, run as the README shows it: two real processes and a real temp dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from _support import GENEROUS, Child, env_with

EXITDIR_SCRIPT = str(Path(sys.executable).with_name("exitdir"))
# As Go's time.Time.String() with its monotonic reading: "... -0700 PDT m=+0.501881542" (9 decimals).
TICK = re.compile(
    r"^\[Busy\] Tick at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [+-]\d{4} \S+ m=(?P<m>[+-]\d+\.\d{9})$"
)


def test_busy_ticks_until_work_signals_exit(exit_dir: Path, spawn: type[Child]) -> None:
    env = env_with(EXIT_DIR=str(exit_dir))
    busy = spawn([EXITDIR_SCRIPT, "demo", "busy"], env=env)
    work = spawn([EXITDIR_SCRIPT, "demo", "work"], env=env)
    work.expect("[Work] Doing work...")
    work.expect("[Work] Exiting...", timeout=5 + GENEROUS)
    work_done = time.monotonic()
    assert work.wait() == 0
    assert work.readline() == ""  # nothing after the seed's two lines

    ticks = []
    while (line := busy.readline()) != "[Busy] Exiting...":
        assert TICK.match(line), line
        ticks.append(line)
    busy_done = time.monotonic()
    assert busy.wait() == 0
    assert busy.readline() == ""
    # 5 s of work at one tick per 500 ms; scheduling noise may shift one either way.
    assert 8 <= len(ticks) <= 11
    # busy leaves as soon as the marker appears, not at its next tick (generous bound for noisy machines).
    assert busy_done - work_done < 0.45
    assert os.listdir(exit_dir) == ["exitFile"]


def test_busy_prints_gos_monotonic_reading_which_grows_tick_by_tick(
    spawn: type[Child], tmp_path: Path
) -> None:
    """Go's seed prints `m=+S.SSSSSSSSS`, seconds since the program started on a monotonic clock."""
    busy = spawn([EXITDIR_SCRIPT, "demo", "busy"], env=env_with(EXIT_DIR=None), cwd=tmp_path)
    readings = []
    for _ in range(3):
        tick = TICK.match(busy.readline())
        assert tick is not None
        readings.append(float(tick["m"]))
    busy.signal(signal.SIGTERM)
    assert busy.wait() == 143
    assert 0 < readings[0] < GENEROUS  # counted from the start, not from boot
    assert readings[0] < readings[1] < readings[2] < readings[0] + GENEROUS


def test_work_seconds_option(exit_dir: Path, spawn: type[Child]) -> None:
    work = spawn([EXITDIR_SCRIPT, "demo", "work", "--seconds", "0.1"], env=env_with(EXIT_DIR=str(exit_dir)))
    work.expect("[Work] Doing work...")
    work.expect("[Work] Exiting...")
    assert work.wait() == 0
    assert os.listdir(exit_dir) == ["exitFile"]


def test_without_exit_dir_busy_runs_until_ctrl_c_and_work_still_finishes(
    spawn: type[Child], tmp_path: Path
) -> None:
    env = env_with(EXIT_DIR=None)
    busy = spawn([EXITDIR_SCRIPT, "demo", "busy"], env=env, cwd=tmp_path)
    work = spawn([EXITDIR_SCRIPT, "demo", "work", "--seconds", "0.2"], env=env, cwd=tmp_path)
    work.expect("[Work] Doing work...")
    work.expect("[Work] Exiting...")
    assert work.wait() == 0
    for _ in range(3):  # still ticking well after work is done
        assert TICK.match(busy.readline())
    busy.signal(signal.SIGINT)
    assert busy.wait() == 130
    _, err = busy.rest()
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_readme_demo_script(tmp_path: Path) -> None:
    # What `make demo` runs: the README's session, verbatim in examples/local-demo.sh.
    script = Path(__file__).parents[1] / "examples" / "local-demo.sh"
    env = env_with(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", TMPDIR=str(tmp_path))
    result = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=5 + GENEROUS, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[Work] Doing work..."
    assert lines[-2:] == ["[Work] Exiting...", "[Busy] Exiting..."]
    assert all(TICK.match(line) for line in lines[1:-2])
    assert os.listdir(tmp_path) == []  # the script cleans up its temp dir


def test_sigterm_stops_busy_with_143_after_cleanup(spawn: type[Child], tmp_path: Path) -> None:
    busy = spawn([EXITDIR_SCRIPT, "demo", "busy"], env=env_with(EXIT_DIR=None), cwd=tmp_path)
    assert TICK.match(busy.readline())
    busy.signal(signal.SIGTERM)
    # 143 comes from exitdir's own handler; dying of the default action would be -15.
    assert busy.wait() == 143
    _, err = busy.rest()
    assert "Traceback" not in err


def test_sigterm_stops_busy_running_as_pid_1(exit_dir: Path, spawn: type[Child]) -> None:
    # In a container busy is PID 1, where the kernel drops a SIGTERM that has no handler: without one,
    # deleting the pod would wait out the whole grace period.
    env = env_with(EXIT_DIR=None)
    unshare = spawn(["unshare", "--pid", "--fork", "--mount-proc", EXITDIR_SCRIPT, "demo", "busy"], env=env)
    assert TICK.match(unshare.readline())
    busy_pid = int(Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()[0])
    os.kill(busy_pid, signal.SIGTERM)
    assert unshare.wait() == 143
