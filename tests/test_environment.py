"""Every option from the environment: ``EXITDIR_<OPTION>`` sets what ``--option`` sets, a flag wins, and a
bad value is the flag's own one-line usage error naming the variable. The walk over the parser's options
covers an option added later without a change here."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

import exitdir
from exitdir import ExitDirError, _cli, _config
from exitdir._marker import list_markers
from test_stops import ENDPOINT, _requests

from _support import EXITDIR, GENEROUS, Child, env_with, python

COMMANDS = ("exit", "wait", "status", "lead", "follow")


def actions(command: str) -> list[argparse.Action]:
    """The options of ``exitdir COMMAND`` as its parser has them (no --help, no positional CMD)."""
    parser = _cli._parser([command])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    return [a for a in sub._actions if a.option_strings and a.default is not argparse.SUPPRESS]


def parsed(argv: list[str]) -> dict[str, object]:
    """What ``exitdir ARGV`` parses to, in the environment as it is now."""
    return vars(_cli._parser(argv).parse_args(argv))


EVERY_OPTION = [(command, action.option_strings[-1]) for command in COMMANDS for action in actions(command)]

# Values tried for an option, first to last, until the flag takes two (or one) that change what is parsed:
# no table of options, so a new one is covered as long as one of these (or its choices) fits it.
CANDIDATES = (
    "7",
    "2.5",
    "success",
    "json",
    "USR1",
    "db",
    "istio",
    "linkerd",
    "http://127.0.0.1:9/stop",
    "https://127.0.0.1:8/quit",
    "127.0.0.1:9",
    "[::1]:80",
    "sh -c true",
    "/srv/ready",
)


def _accepted(command: str, option: str, action: argparse.Action) -> list[str]:
    """Up to two values that ``--option VALUE`` accepts, each parsing to something else than no flag."""
    baseline = parsed([command])
    found = []
    for value in [*reversed(list(action.choices or ())), *CANDIDATES]:
        try:
            if parsed([command, option, value]) != baseline:
                found.append(value)
        except _cli._UsageError:  # not a value this option takes: the next candidate
            continue
        if len(found) == 2:
            break
    return found


@pytest.mark.parametrize(("command", "option"), EVERY_OPTION)
def test_every_option_of_every_command_can_be_set_by_its_variable(
    command: str, option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (action,) = [a for a in actions(command) if option in a.option_strings]
    variable = _cli._variable(action)
    assert variable == "EXITDIR_" + option.lstrip("-").upper().replace("-", "_")
    assert variable not in ("EXIT_DIR", "EXITDIR_BACKEND", "EXITDIR_POLL_INTERVAL")  # the library's own
    if action.nargs == 0:
        flags, text = [option], "1"
        if parsed([command, option]) == parsed([command]):  # the default's flag (--all): read all the same
            monkeypatch.setenv(variable, "maybe")
            with pytest.raises(_cli._UsageError, match=f"^{variable}=maybe: 'maybe' is not yes or no"):
                parsed([command])
            monkeypatch.setenv(variable, "0")
            assert parsed([command]) == parsed([command, option])
    else:
        values = _accepted(command, option, action)
        assert values, f"no candidate value fits {option}: add one to CANDIDATES"
        many = action.default is None and isinstance(parsed([command, option, values[0]])[action.dest], list)
        if not many:
            values = values[:1]
        flags, text = [arg for value in values for arg in (option, value)], ",".join(values)
        assert parsed([command, *flags]) != parsed([command])
    by_flag = parsed([command, *flags])
    baseline = parsed([command])
    monkeypatch.setenv(variable, text)
    by_variable = parsed([command])
    if variable in _cli._READ_BY_THE_LIBRARY:
        # Left to where it is read, when the flag's value is None: the namespace keeps None, and the
        # effect is the flag's.
        assert by_flag != by_variable == baseline
        assert _effect(variable, by_variable) == _effect(variable, by_flag)
        monkeypatch.delenv(variable)
        assert _effect(variable, by_variable) != _effect(variable, by_flag)
    else:
        assert by_variable == by_flag


def _effect(variable: str, args: dict[str, object]) -> object:
    """What a variable read outside the parser does, given the namespace: whether a directory is required,
    or the log style."""
    if variable == "EXITDIR_REQUIRE_DIR":
        try:
            _config.require_directory(None, args["require_dir"])  # type: ignore[arg-type]
        except ExitDirError:
            return "required"
        return "not required"
    assert variable in ("EXITDIR_LOG_FORMAT", "EXITDIR_TIMESTAMPS"), f"what does {variable} do?"
    return _config.log_style(args["log_format"], args["timestamps"])  # type: ignore[arg-type]


def test_the_walk_sees_the_options_it_must(monkeypatch: pytest.MonkeyPatch) -> None:
    # Of each kind at least one, so that the walk cannot pass by seeing nothing.
    assert {("exit", "--code"), ("wait", "--timeout"), ("follow", "--post"), ("wait", "--any")} <= set(
        EVERY_OPTION
    )
    assert ("follow", "--help") not in EVERY_OPTION
    monkeypatch.setenv("EXITDIR_SECONDS", "abc")  # demo's options are no settings
    assert parsed(["demo", "work"])["seconds"] == 5.0


@pytest.mark.parametrize("yes", ["1", "true", "YES", " On "])
@pytest.mark.parametrize("no", ["0", "false", "No", "OFF"])
def test_on_off_options_take_yes_and_no_in_any_case(
    yes: str, no: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXITDIR_KILL_DESCENDANTS", yes)
    monkeypatch.setenv("EXITDIR_QUIET", no)
    args = parsed(["follow"])
    assert (args["kill_descendants"], args["quiet"]) == (True, False)


def test_an_empty_or_blank_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXITDIR_GRACE", "")
    monkeypatch.setenv("EXITDIR_QUIET", "  ")
    monkeypatch.setenv("EXITDIR_POST", " , ")
    args = parsed(["follow"])
    assert (args["grace"], args["quiet"], args["post"]) == (10.0, False, None)
    monkeypatch.setenv("EXITDIR_DIR", "")
    monkeypatch.setenv("EXIT_DIR", "/from/exit-dir")
    assert parsed(["wait"])["dir"] is None  # so the library reads EXIT_DIR
    assert _config.resolve_directory(None) == "/from/exit-dir"


def test_a_list_is_comma_separated_with_escaped_commas_and_flags_replace_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXITDIR_LEADER", "db, api,,")
    monkeypatch.setenv("EXITDIR_READY_CMD", r'sh -c "a\, b", true')
    assert parsed(["follow"])["leader"] == ["db", "api"]
    assert parsed(["follow"])["ready_cmd"] == ['sh -c "a, b"', "true"]
    assert parsed(["follow", "--leader", "web"])["leader"] == ["web"]
    assert parsed(["follow", "--leader", "web", "--leader", "db"])["leader"] == ["web", "db"]


def test_a_flag_wins_even_over_a_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXITDIR_GRACE", "abc")
    monkeypatch.setenv("EXITDIR_ANY", "1")
    monkeypatch.setenv("EXITDIR_SIGNAL", "KILL")
    args = parsed(["follow", "--grace", "10", "--all", "--signal", "15"])  # each flag gives the default
    assert (args["grace"], args["require"], args["signal"]) == (10.0, "all", 15)


def test_all_and_any_both_set_is_a_usage_error_naming_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXITDIR_ALL", "1")
    monkeypatch.setenv("EXITDIR_ANY", "no")
    assert parsed(["wait"])["require"] == "all"
    monkeypatch.setenv("EXITDIR_ANY", "yes")
    assert _cli.main(["wait", "--dir", "/nonexistent"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("exitdir: usage: EXITDIR_ALL and EXITDIR_ANY are both set")
    assert _cli.main(["status", "--any", "--dir", "/nonexistent"]) == 0  # a flag settles it


def test_a_usage_error_about_an_option_set_by_its_variable_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # EXITDIR_NAME set for the whole pod, meant for the leader, reaches a follower too.
    monkeypatch.setenv("EXITDIR_NAME", "app")
    assert _cli.main(["follow", "--", "true"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("exitdir: usage: --name says under which name a helper is announced ready")
    assert line.endswith("(--name is set by EXITDIR_NAME)")
    monkeypatch.setenv("EXITDIR_SIGNAL", "INT")
    assert _cli.main(["lead", "--grace", "3", "--", "true"]) == 2  # --grace by its flag: nothing to add
    assert capsys.readouterr().err.endswith("--kill-descendants (--signal is set by EXITDIR_SIGNAL)\n")


def test_help_works_whatever_the_environment_holds_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXITDIR_GRACE", "abc")
    for command in COMMANDS:
        assert _cli.main([command, "--help"]) == 0
        assert "set as EXITDIR_<OPTION>" in " ".join(capsys.readouterr().out.split())
    assert _cli.main(["demo", "--help"]) == 0
    assert "EXITDIR_<OPTION>" not in capsys.readouterr().out


def test_dir_comes_from_the_flag_then_exitdir_dir_then_exit_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = (tmp_path / name for name in ("flag", "exitdir-dir", "exit-dir"))
    monkeypatch.setenv("EXIT_DIR", str(third))
    assert _cli.main(["exit", "--name", "a"]) == 0
    monkeypatch.setenv("EXITDIR_DIR", str(second))
    assert _cli.main(["exit", "--name", "b"]) == 0
    assert _cli.main(["exit", "--name", "c", "--dir", str(first)]) == 0
    assert [sorted(os.listdir(d)) for d in (first, second, third)] == [["c"], ["b"], ["a"]]


def test_require_dir_stays_the_librarys_so_a_leader_with_a_directory_writes_its_marker(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXITDIR_REQUIRE_DIR", "maybe")
    assert _cli.main(["exit", "--dir", str(exit_dir)]) == 0
    assert os.listdir(exit_dir) == ["exitFile"]
    assert _cli.main(["exit"]) == 1  # no directory: now the value matters, and is refused as before
    assert "EXITDIR_REQUIRE_DIR='maybe' is not a yes/no value" in capsys.readouterr().err


def test_liveness_dir_from_its_variable_is_what_the_library_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exit_dir = str(tmp_path / "exit")
    monkeypatch.setenv("EXITDIR_LIVENESS_DIR", "live")
    given = parsed(["wait"])["liveness_dir"]
    assert given == "live"
    resolved = _config.resolve_liveness_dir(str(given), exit_dir)
    assert resolved == _config.resolve_liveness_dir(None, exit_dir) == os.path.abspath("live")


# As real processes: the variables of a container's manifest, read by the installed command.


def run(argv: list[str], *, cwd: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXITDIR, *argv],
        env=env_with(**variables),
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
        cwd=cwd,
    )


def test_wait_times_out_by_its_variable(exit_dir: Path) -> None:
    done = run(["wait"], EXIT_DIR=str(exit_dir), EXITDIR_TIMEOUT="0.2")
    assert done.returncode == 124
    assert "timed out after 0.2 s" in done.stderr


def test_exit_writes_the_marker_its_variables_describe_and_a_flag_wins(exit_dir: Path) -> None:
    for argv in (["exit", "--reason", "migrations failed"], ["exit", "--name", "api", "--code", "5"]):
        assert run(argv, EXITDIR_DIR=str(exit_dir), EXITDIR_NAME="db", EXITDIR_CODE="3").returncode == 0
    found = {marker.name: (marker.code, marker.reason) for marker in list_markers(str(exit_dir))}
    assert found == {"db": (3, "migrations failed"), "api": (5, None)}


def _endpoints(spawn: type[Child], exit_dir: Path, count: int) -> list[tuple[Child, str]]:
    """``count`` real HTTP endpoints on loopback (test_stops' admin endpoint), each with its base URL."""
    servers = [spawn([*python(ENDPOINT), str(exit_dir), "200"]) for _ in range(count)]
    return [(server, f"http://127.0.0.1:{server.read_until('ready').split()[1]}") for server in servers]


def test_follow_posts_to_each_url_of_its_variable_and_the_flag_replaces_them(
    exit_dir: Path, spawn: type[Child]
) -> None:
    (one, first), (two, second), (three, third) = _endpoints(spawn, exit_dir, 3)
    exitdir.exit(directory=exit_dir)  # the leader is done: the stop-only follower posts at once
    # A comma inside a URL is escaped; whitespace around an item is dropped.
    posts = rf"{first}/quit?a\,b, {second}/stop"
    done = run(["follow"], EXIT_DIR=str(exit_dir), EXITDIR_POST=posts)
    assert done.returncode == 0, done.stderr
    assert run(["follow", "--post", f"{third}/x"], EXIT_DIR=str(exit_dir), EXITDIR_POST=posts).returncode == 0
    assert (_requests(one), _requests(two), _requests(three)) == (
        ["POST /quit?a,b marker=yes"],
        ["POST /stop marker=yes"],
        ["POST /x marker=yes"],
    )


@pytest.mark.parametrize(
    ("argv", "variable", "value", "says"),
    [
        (["follow", "--", "true"], "EXITDIR_GRACE", "abc", "duration 'abc' is not a number of seconds"),
        (["exit"], "EXITDIR_CODE", "300", "exit code 300 is outside 0..255"),
        (["follow", "--", "true"], "EXITDIR_EXIT_CODE", "never", "invalid choice: 'never'"),
        (["wait"], "EXITDIR_JSON", "maybe", "'maybe' is not yes or no: give 1, true, yes or on for --json"),
        (["exit"], "EXITDIR_NAME", "a/b", "marker name 'a/b' is a path"),
        (
            ["follow"],
            "EXITDIR_POST",
            "http://127.0.0.1:9/x,ftp://h",
            "'ftp://h' is not an http:// or https://",
        ),
        (["lead", "--", "touch", "ran"], "EXITDIR_SIGNAL", "NOPE", "'NOPE' is not a signal"),
    ],
)
def test_a_bad_value_is_one_usage_line_naming_the_variable(
    argv: list[str], variable: str, value: str, says: str, exit_dir: Path
) -> None:
    done = run(argv, cwd=exit_dir.parent, EXIT_DIR=str(exit_dir), **{variable: value})
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"exitdir: usage: {variable}={value}: {says}")
    assert line.endswith(f"(see 'exitdir {argv[0]} --help')")
    assert os.listdir(exit_dir) == []
    assert not (exit_dir.parent / "ran").exists()


def test_the_program_inherits_the_variables_unchanged(exit_dir: Path) -> None:
    """A wrapper is transparent: a nested exitdir in its program reads the same variables. EXITDIR_CODE,
    which ``lead`` has no option for, is left to the ``exit`` inside."""
    inner = (
        "import os; print(os.environ['EXITDIR_NAME']); "
        "from exitdir._cli import main; main(['exit', '--name', 'inner'])"
    )
    done = run(["lead", "--", *python(inner)], EXIT_DIR=str(exit_dir), EXITDIR_NAME="app", EXITDIR_CODE="4")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "app\n"
    assert {marker.name: marker.code for marker in list_markers(str(exit_dir))} == {"app": 0, "inner": 4}
