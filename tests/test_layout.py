"""The package's shape, checked on its source: who may import whom (docs/design.md says, and this test
keeps the page and the code equal), and no module touching another module's private state."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import exitdir

PACKAGE = Path(exitdir.__file__).parent
DESIGN = Path(__file__).parent.parent / "docs" / "design.md"


def modules() -> dict[str, Path]:
    """``_watch._inotify`` -> its path; a package's ``__init__`` is named after the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, at run time, lazily or for type checking alike.

    An import of another subpackage's module counts as the subpackage (``_watch._base`` from ``_token``
    is ``_watch``): the table speaks of a subpackage's inside only in its own rows.
    """
    here = path.relative_to(PACKAGE).parts[:-1]  # the package the module is in, under exitdir
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        base = list(here[: len(here) - (node.level - 1)])
        targets = [base + node.module.split(".")] if node.module else [[*base, a.name] for a in node.names]
        for target in targets:
            dotted = ".".join(target)
            if dotted not in known or dotted == name:
                continue  # `from . import __version__`: the package itself, not a module
            top = dotted.partition(".")[0]
            if top != dotted and top != name.partition(".")[0]:
                dotted = top
            found.add(dotted)
    return found


def layout_table() -> dict[str, set[str]]:
    """The "may import" column of docs/design.md's layout table, by module."""
    text = DESIGN.read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        table[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return table


def test_design_md_lists_every_module_and_exactly_what_it_imports() -> None:
    table = layout_table()
    assert set(table) == set(modules()), "docs/design.md's layout table and src/exitdir disagree"
    for name, path in modules().items():
        assert imports_of(name, path) == table[name], f"{name}: docs/design.md's 'may import' is stale"


def test_the_pure_and_low_modules_import_nothing_above_them() -> None:
    # The rules stay pure (property-tested without I/O); the seams stay at the bottom of the graph.
    assert imports_of("_rules", PACKAGE / "_rules.py") <= {"_config", "_marker"}
    for bottom in ("_errno", "_errors", "_clock", "_signals", "_log"):
        assert imports_of(bottom, PACKAGE / f"{bottom}.py") == set(), bottom


def private_names_defined(tree: ast.Module) -> set[str]:
    """Private attributes a module's own classes define: methods, class attributes, ``self._x = ...``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Assign | ast.AnnAssign):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.endswith("__")}


def private_reaches(path: Path) -> list[str]:
    """``obj._name`` on anything but self/cls, where no class of this module defines ``_name``."""
    tree = ast.parse(path.read_text())
    own = private_names_defined(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.endswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and node.attr not in own
        ):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


def test_no_module_reaches_into_another_modules_private_state() -> None:
    reaches = [reach for path in modules().values() for reach in private_reaches(path)]
    assert reaches == []


def test_the_private_state_check_catches_a_reach(tmp_path: Path) -> None:
    # The check itself must be able to fail: the asyncio front as it was before the waiting contract.
    before = tmp_path / "_async.py"
    before.write_text("def drive(token):\n    return token._watch_for_loop()\n")
    assert private_reaches(before) == ["_async.py:2: ._watch_for_loop"]
