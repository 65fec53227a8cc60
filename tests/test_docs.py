"""The docs keep in step with the code: in the README every option in its command's usage line (or among
the options every command takes) and in its option table with its variable, every exit status the code
can return in the exit-status table, every log event the code names with its severity; on
docs/sidecars.md every preset with its endpoint, every manifest it names, every excerpt as its manifest
has it."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
import yaml

from exitdir import _cli, _stops, _supervise
from exitdir._ready import READY_PRESETS
from exitdir._stops import QUIT_PRESETS

README = (Path(__file__).parent.parent / "README.md").read_text()
# Said once for every command instead of in each usage line.
COMMON = {"--help", "--quiet", "--log-format", "--timestamps"}


def usage_block(command: str) -> str:
    """The README's usage line(s) for ``exitdir COMMAND``: the sh block that starts with it."""
    found = re.search(rf"```sh\n(exitdir {command} \[.*?)```", README, re.S)
    assert found is not None, f"README has no usage block for exitdir {command}"
    return found.group(1)


def options(command: str) -> list[list[str]]:
    """Each option of ``exitdir COMMAND`` with its spellings (``["-v", "--verbose"]``)."""
    parser = _cli._parser([command])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    return [action.option_strings for action in sub._actions if action.option_strings]


@pytest.mark.parametrize("command", ["exit", "wait", "status", "lead", "follow"])
def test_every_option_is_in_its_commands_usage_line(command: str) -> None:
    shown = set(re.findall(r"--?[a-z][a-z-]*", usage_block(command)))
    missing = sorted(
        spellings[-1]
        for spellings in options(command)
        if not set(spellings) & (shown | COMMON)  # any spelling will do: -v for --verbose
    )
    assert not missing, f"README's usage of exitdir {command} lacks {missing}"


def option_table(heading: str) -> list[tuple[list[str], list[str]]]:
    """The README's first option table under ``heading``: each row's option spellings and variables."""
    section = README[README.index(f"\n{heading}") :]
    table = section[section.index("| option | variable | meaning |") :]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        option, variable = line.split(" | ")[:2]
        rows.append(
            (re.findall(r"--?[a-z][a-z-]*", option), re.findall(r"EXITDIR_[A-Z_]+|EXIT_DIR", variable))
        )
    assert rows, f"README has no option table under {heading}"
    return rows


def _actions(command: str) -> list[argparse.Action]:
    parser = _cli._parser([command])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    return [a for a in sub._actions if a.option_strings and a.default is not argparse.SUPPRESS]


@pytest.mark.parametrize("command", ["exit", "wait", "status", "lead", "follow"])
def test_every_option_has_a_row_with_its_variable_and_every_row_an_option(command: str) -> None:
    actions = {spelling: action for action in _actions(command) for spelling in action.option_strings}
    every = option_table("### Options from the environment")  # --dir and --quiet, for every command
    own = option_table(f"### `exitdir {command}`")
    shown = set()
    for spellings, variables in every + own:
        for spelling in spellings:
            assert spelling in actions, f"README's table for exitdir {command} has {spelling}, which it lacks"
            assert _cli._variable(actions[spelling]) in variables, f"{spelling}: {variables}"
            shown.add(actions[spelling].dest + actions[spelling].option_strings[-1])
    missing = sorted(
        a.option_strings[-1] for a in _actions(command) if a.dest + a.option_strings[-1] not in shown
    )
    assert not missing, f"README's table for exitdir {command} lacks {missing}"


def test_the_options_every_command_takes_are_said_once() -> None:
    said = README[README.index("Every command takes") :].split("\n\n", 1)[0]
    for option in COMMON - {"--help"}:
        assert f"{option}" in said, option


# Where each say-function takes its event when it is not given as event=: its positional index.
_EVENT_AT = {"_say": 2, "_error": 1, "_emit": 1, "say": 1}


def events_named() -> set[str]:
    """Every event name the package's sources pass to a say-function, or return as one (`_cause`)."""
    found: set[str] = set()
    package = Path(_cli.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                name = "say" if name == "_say" and isinstance(func, ast.Attribute) else name  # self._say
                if name not in _EVENT_AT:
                    continue
                given = [kw.value for kw in node.keywords if kw.arg == "event"]
                at = _EVENT_AT[name]
                given += node.args[at : at + 1]
                found |= {
                    arg.value for arg in given if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                }
            elif isinstance(node, ast.FunctionDef) and node.name == "_cause":
                constants = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                found |= {c for c in constants if isinstance(c, str) and re.fullmatch(r"[a-z]+(-[a-z]+)+", c)}
    return found


def test_every_log_event_is_in_the_readme_with_its_severity() -> None:
    logs = README[README.index("### Logs: text or JSON") :].split("\n### ", 1)[0]
    events = events_named()
    assert {"started", "marker-seen", "stopping", "usage", "not-ready"} <= events  # the scan finds them
    listed = dict(re.findall(r"`([a-z]+(?:-[a-z]+)*)`(?:\s+\((WARNING|ERROR)\b)?", logs))
    missing = sorted(events - set(listed))
    assert not missing, f"README's Logs section lacks the events {missing}"
    warnings = {event for event in events if event in _cli._WARNINGS}
    assert warnings == {event for event in events if listed[event] == "WARNING"}


def test_every_exit_status_the_code_returns_is_in_the_table() -> None:
    table = README[README.index("| status | meaning |") :]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    statuses = {
        value for name, value in vars(_cli).items() if name.startswith("EXIT_") and isinstance(value, int)
    }
    statuses |= {_supervise.EXIT_NOT_FOUND, _supervise.EXIT_NOT_EXECUTABLE}
    missing = sorted(status for status in statuses if str(status) not in rows)
    assert not missing, f"README's exit-status table lacks {missing}"


SIDECARS = (Path(__file__).parent.parent / "docs" / "sidecars.md").read_text()
MANIFEST_DIR = Path(__file__).parent.parent / "deploy" / "kubernetes"


def _preset_rows() -> dict[str, list[str]]:
    """The sidecars page's preset table: each preset's cells after its name."""
    table = SIDECARS[SIDECARS.index("| preset | `--quit NAME` posts to |") :]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _endpoint(url: str) -> str:
    """``http://127.0.0.1:15020/quitquitquit`` as the page writes it: ``127.0.0.1:15020/quitquitquit``."""
    return url.split("://", 1)[1]


@pytest.mark.parametrize("name", sorted(QUIT_PRESETS))
def test_every_quit_preset_has_its_row_with_its_endpoint(name: str) -> None:
    assert f"`POST {_endpoint(QUIT_PRESETS[name])}`" == _preset_rows()[name][0]


@pytest.mark.parametrize("name", sorted(READY_PRESETS))
def test_every_readiness_preset_has_its_row_with_its_endpoint(name: str) -> None:
    assert f"`GET {_endpoint(READY_PRESETS[name])}`" == _preset_rows()[name][1]


def test_the_preset_table_names_no_preset_the_code_lacks() -> None:
    rows = _preset_rows()
    assert set(rows) == set(QUIT_PRESETS) | set(READY_PRESETS)
    assert all(row[1] == "—" for name, row in rows.items() if name not in READY_PRESETS)


def test_every_hint_exitdir_gives_is_on_the_sidecars_page() -> None:
    flowing = " ".join(SIDECARS.split())  # the page wraps its lines anywhere
    for hint in _stops._HINTS.values():
        assert hint in flowing


def test_every_manifest_the_sidecars_page_names_exists() -> None:
    named = set(re.findall(r"deploy/kubernetes/([\w.-]+\.yaml)", SIDECARS))
    assert named, "the page names no manifest"
    assert sorted(name for name in named if not (MANIFEST_DIR / name).is_file()) == []


def _subtree(part: object, whole: object) -> bool:
    """Whether ``part`` is ``whole`` abridged: mappings may leave keys out, lists of named mappings may
    leave items out (matched by name), and the string ``...`` stands for any value."""
    if part == "...":
        return True
    if isinstance(part, dict) and isinstance(whole, dict):
        return all(key in whole and _subtree(value, whole[key]) for key, value in part.items())
    if isinstance(part, list) and isinstance(whole, list):
        if all(isinstance(item, dict) and "name" in item for item in part):
            by_name = {item.get("name"): item for item in whole if isinstance(item, dict)}
            return all(_subtree(item, by_name.get(item["name"])) for item in part)
        return len(part) == len(whole) and all(map(_subtree, part, whole))
    return part == whole


def test_every_excerpt_on_the_sidecars_page_is_its_manifest_abridged() -> None:
    excerpts = re.findall(
        r"```yaml\n# deploy/kubernetes/([\w.-]+\.yaml): spec.template, abridged\n(.*?)```", SIDECARS, re.S
    )
    assert len(excerpts) == 4
    for name, text in excerpts:
        (job,) = [
            doc for doc in yaml.safe_load_all((MANIFEST_DIR / name).read_text()) if doc["kind"] == "Job"
        ]
        assert _subtree(yaml.safe_load(text), job["spec"]["template"]), name


def test_every_reference_link_on_the_sidecars_page_is_defined_and_used() -> None:
    defined = set(re.findall(r"^\[([^\]]+)\]: https?://\S+$", SIDECARS, re.M))
    text = re.sub(r"^\[[^\]]+\]: .*$", "", SIDECARS, flags=re.M)
    text = re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.S)  # code holds brackets of its own
    used = set(re.findall(r"\]\[([^\]]+)\]", text))
    used |= set(re.findall(r"(?<![\]\w])\[([^\]]+)\](?![(\[])", text))
    assert sorted(used - defined) == []
    assert sorted(defined - used) == []


def test_when_to_use_which_covers_readiness_between_wrappers_with_the_real_options() -> None:
    section = SIDECARS[SIDECARS.index("## When to use which mechanism") :]
    section = section[: section.index("\n## ")]
    for option in ("--name", "--ready-tcp", "--ready-http", "--ready-file", "--ready-cmd"):
        assert option in section
        assert any(option in spellings for spellings in options("follow")), option
    assert any("--after" in spellings for spellings in options("lead"))
    assert any("--ready" in spellings for spellings in options("wait"))


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_on_the_sidecars_page_leads_somewhere() -> None:
    docs = Path(__file__).parent.parent / "docs"
    for target in re.findall(r"\]\(([^)\s]+)\)", SIDECARS):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = (docs / path).resolve() if path else docs / "sidecars.md"
        assert page.exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, target
