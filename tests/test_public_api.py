"""The public surface: exactly what __all__ says, each name documented with an example."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import exitdir


def test_all_is_a_tuple_matching_the_public_names() -> None:
    assert isinstance(exitdir.__all__, tuple)
    assert len(set(exitdir.__all__)) == len(exitdir.__all__)
    for name in exitdir.__all__:
        getattr(exitdir, name)  # every advertised name resolves (they load lazily)
    public = {
        name
        for name in dir(exitdir)
        if not name.startswith("_")
        and not isinstance(getattr(exitdir, name), types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING"}
    }
    assert public == set(exitdir.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        exitdir.nope  # type: ignore[attr-defined]  # noqa: B018


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    for name in exitdir.__all__:
        doc = getattr(exitdir, name).__doc__ or ""
        # CancelOnExit's example lives on cancel_on_exit(), which creates it.
        if name != "CancelOnExit":
            assert ">>>" in doc, f"exitdir.{name} has no example in its docstring"
        assert doc.strip(), f"exitdir.{name} has no docstring"


def test_public_objects_come_from_private_modules() -> None:
    for name in exitdir.__all__:
        module = getattr(exitdir, name).__module__
        assert module.startswith("exitdir._"), f"exitdir.{name} is defined in {module}"


def test_import_does_not_import_heavy_modules() -> None:
    heavy = ("asyncio", "ctypes", "json", "threading", "typing", "logging", "pathlib", "exitdir._token")
    code = f"import sys, exitdir; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_typed_package() -> None:
    import importlib.resources

    assert importlib.resources.files("exitdir").joinpath("py.typed").is_file()
