"""The wrapper's own messages as JSON lines or timestamped text (`--log-format`, `--timestamps`), read from
real `exitdir` processes stopped by real markers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, Child, env_with, python

# A helper that says its pid once it runs, then waits to be stopped (SIGTERM's default action ends it).
HELPER = python("import os, time; print('ready', os.getpid(), flush=True); time.sleep(60)")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
KEYS = ("time", "severity", "message", "event")


def records(err: str) -> list[dict[str, object]]:
    """Every stderr line as a JSON object with the four keys every record has, in order."""
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    parsed = [json.loads(line) for line in lines]
    for record in parsed:
        assert tuple(record)[:4] == KEYS, record
        assert isinstance(record["time"], str)
        assert RFC3339.match(record["time"]), record
        assert record["severity"] in ("INFO", "WARNING", "ERROR"), record
    return parsed


def seconds_since(stamp: object) -> float:
    """How long ago the RFC 3339 UTC time ``stamp`` was."""
    assert isinstance(stamp, str)
    return time.time() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=GENEROUS, check=False)


def marker_as_wait_prints_it(exit_dir: Path) -> object:
    return json.loads(run([*EXITDIR, "wait", "--json", "--dir", str(exit_dir)]).stdout)


def test_follow_stopped_by_a_marker_logs_each_step_as_one_json_object(
    exit_dir: Path, spawn: type[Child]
) -> None:
    follower = spawn([*EXITDIR, "--log-format", "json", "follow", "--dir", str(exit_dir), "--", *HELPER])
    pid = int(follower.read_until("ready").split()[1])
    exitdir.exit(3, reason="2 tests failed", directory=exit_dir)
    assert follower.wait() == 0
    out, err = follower.rest()
    assert out == ""  # the helper's stdout is its own; nothing of ours goes there
    said = records(err)
    assert [record["event"] for record in said] == ["started", "marker-seen", "stopping", "exited"]
    started, seen, stopping, exited = said
    assert started == {**started, "severity": "INFO", "pid": pid, "command": HELPER[0]}
    assert seen["message"] == "leader signalled (exitFile: code 3: 2 tests failed)"
    assert seen["marker"] == marker_as_wait_prints_it(exit_dir)
    assert stopping["message"] == f"stopping {HELPER[0]} (pid {pid}) with SIGTERM"
    assert (stopping["pid"], stopping["signal"], stopping["command"]) == (pid, "SIGTERM", HELPER[0])
    assert (exited["pid"], exited["status"], exited["signal"]) == (pid, 143, "SIGTERM")
    assert all(0 <= seconds_since(record["time"]) < GENEROUS for record in said)


def test_text_keeps_its_lines_and_stays_quiet_about_the_lifecycle(exit_dir: Path, spawn: type[Child]) -> None:
    """Text says what it always said, as two lines now (one event each); started/exited are JSON's."""
    follower = spawn([*EXITDIR, "follow", "--dir", str(exit_dir), "--", *HELPER])
    pid = int(follower.read_until("ready").split()[1])
    exitdir.exit(3, reason="2 tests failed", directory=exit_dir)
    assert follower.wait() == 0
    assert follower.rest()[1] == (
        "exitdir: leader signalled (exitFile: code 3: 2 tests failed)\n"
        f"exitdir: stopping {HELPER[0]} (pid {pid}) with SIGTERM\n"
    )


def test_lead_in_json_says_what_it_ran_and_the_marker_it_wrote(exit_dir: Path) -> None:
    done = run([*EXITDIR, "lead", "--log-format", "json", "--dir", str(exit_dir), "--", "sh", "-c", "exit 4"])
    assert done.returncode == 4
    said = records(done.stderr)
    assert [record["event"] for record in said] == ["started", "exited", "marker-written"]
    assert said[1]["status"] == 4
    assert "signal" not in said[1]  # a fact the event does not have is absent, not null
    assert said[2]["message"] == f"wrote {exit_dir / 'exitFile'} (code 4)"
    assert said[2]["marker"] == marker_as_wait_prints_it(exit_dir)
    # Text stays as quiet as it was (a directory of its own: a marker left behind would be said).
    assert run([*EXITDIR, "lead", "--dir", str(exit_dir / "text"), "--", "true"]).stderr == ""


def test_a_control_character_in_a_reason_stays_one_json_line(exit_dir: Path, spawn: type[Child]) -> None:
    reason = "line one\nline two\r\x1b[2J\u202egone\x00"
    follower = spawn([*EXITDIR, "follow", "--log-format", "json", "--dir", str(exit_dir), "--", *HELPER])
    follower.read_until("ready")
    exitdir.exit(1, reason=reason, directory=exit_dir)
    assert follower.wait() == 0
    _, err = follower.rest()
    assert all(ord(char) < 0x7F and (char.isprintable() or char == "\n") for char in err)
    seen = records(err)[1]
    assert seen["event"] == "marker-seen"
    assert isinstance(seen["marker"], dict)
    assert seen["marker"]["reason"] == reason  # exact in the fields
    assert seen["message"] == (  # and the message has the text line's words, escaped as text escapes them
        "leader signalled (exitFile: code 1: line one\\x0aline two\\x0d\\x1b[2J\\u202egone\\x00)"
    )


def test_a_usage_error_is_one_json_object_whichever_side_of_the_command_the_option_is() -> None:
    for argv in (
        [*EXITDIR, "--log-format", "json", "follow", "--bogus"],
        [*EXITDIR, "follow", "--log-format=json", "--bogus"],
        [*EXITDIR, "wait", "--bogus"],  # from the environment
    ):
        done = run(argv, env_with(EXITDIR_LOG_FORMAT="json"))
        assert done.returncode == 2, argv
        (said,) = records(done.stderr)
        assert (said["severity"], said["event"]) == ("ERROR", "usage")
        assert said["message"] == "usage: unrecognized arguments: --bogus (see 'exitdir --help')"


def test_the_environment_sets_the_format_and_a_flag_wins(exit_dir: Path) -> None:
    env = env_with(EXITDIR_LOG_FORMAT="JSON")  # a variable's value in any case, as EXITDIR_REQUIRE_DIR's
    waited = run([*EXITDIR, "wait", "--timeout", "0", "--dir", str(exit_dir)], env)
    assert waited.returncode == 124
    (said,) = records(waited.stderr)
    assert (said["severity"], said["event"]) == ("WARNING", "timed-out")
    assert said["message"] == f"timed out after 0 s waiting for a marker in {exit_dir}"
    flagged = run([*EXITDIR, "wait", "--log-format", "text", "--timeout", "0", "--dir", str(exit_dir)], env)
    assert flagged.stderr == f"exitdir: timed out after 0 s waiting for a marker in {exit_dir}\n"


def test_a_bad_format_or_timestamps_value_is_a_usage_error_naming_it(exit_dir: Path) -> None:
    wait = [*EXITDIR, "wait", "--timeout", "0", "--dir", str(exit_dir)]
    bad_flag = run([*EXITDIR, "wait", "--log-format", "xml"])
    assert (bad_flag.returncode, bad_flag.stderr) == (
        2,
        "exitdir: usage: argument --log-format: unknown log format 'xml': use one of text, json "
        "(see 'exitdir wait --help')\n",
    )
    bad_env = run(wait, env_with(EXITDIR_LOG_FORMAT="xml"))
    assert (bad_env.returncode, bad_env.stderr) == (
        2,
        "exitdir: usage: EXITDIR_LOG_FORMAT='xml' is invalid: set it to text or json\n",
    )
    bad_stamps = run(wait, env_with(EXITDIR_TIMESTAMPS="maybe"))
    assert bad_stamps.returncode == 2
    assert bad_stamps.stderr.startswith("exitdir: usage: EXITDIR_TIMESTAMPS='maybe' is not a yes/no value")


def test_timestamps_start_each_text_line_with_rfc3339_utc(exit_dir: Path) -> None:
    for argv, env in (
        ([*EXITDIR, "wait", "--timestamps", "--timeout", "0", "--dir", str(exit_dir)], None),
        ([*EXITDIR, "--timestamps", "wait", "--timeout", "0", "--dir", str(exit_dir)], None),
        ([*EXITDIR, "wait", "--timeout", "0", "--dir", str(exit_dir)], env_with(EXITDIR_TIMESTAMPS="1")),
        ([*EXITDIR, "--timestamps", "wait", "--bogus"], None),  # a usage error too
    ):
        done = run(argv, env)
        stamp, _, rest = done.stderr.rstrip("\n").partition(" ")
        assert RFC3339.match(stamp), done.stderr
        assert 0 <= seconds_since(stamp) < GENEROUS
        assert rest.startswith(("exitdir: timed out after 0 s", "exitdir: usage: unrecognized")), done.stderr


def test_quiet_silences_all_but_errors_in_json_too(exit_dir: Path, spawn: type[Child]) -> None:
    follower = spawn(
        [*EXITDIR, "follow", "-q", "--log-format", "json", "--dir", str(exit_dir), "--", *HELPER]
    )
    follower.read_until("ready")
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0
    assert follower.rest()[1] == ""
    failed = run(
        [*EXITDIR, "--log-format", "json", "lead", "-q", "--dir", str(exit_dir), "--", "no-such-cmd"]
    )
    assert failed.returncode == 127
    (said,) = records(failed.stderr)
    assert (said["severity"], said["event"]) == ("ERROR", "not-started")
    assert (said["message"], said["command"], said["status"]) == (
        "error: command not found: no-such-cmd",
        "no-such-cmd",
        127,
    )


def test_stdout_is_unchanged_by_the_log_format(exit_dir: Path) -> None:
    exitdir.exit(3, reason="done", directory=exit_dir)
    plain = run([*EXITDIR, "wait", "--json", "--dir", str(exit_dir)])
    logged = run([*EXITDIR, "wait", "--json", "--log-format", "json", "--timestamps", "--dir", str(exit_dir)])
    assert logged.stdout == plain.stdout
    assert json.loads(logged.stdout)["reason"] == "done"


def test_a_broken_stderr_never_stops_supervision_in_json(exit_dir: Path, spawn: type[Child]) -> None:
    """The JSON lines go through the same seam as text: a write that fails (EPIPE: nobody reads stderr
    any more) is dropped, and the helper is still stopped and reaped."""
    follower = spawn([*EXITDIR, "--log-format", "json", "follow", "--dir", str(exit_dir), "--", *HELPER])
    assert follower.proc.stderr is not None
    follower.proc.stderr.close()  # "started" may already be written into the pipe; the rest cannot be
    pid = int(follower.read_until("ready").split()[1])
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)
