"""The public surface: exactly what __all__ says, each name documented with an example."""

from __future__ import annotations

import subprocess
import sys
import types

import exitdir


def test_all_is_a_tuple_matching_the_public_names() -> None:
    assert isinstance(exitdir.__all__, tuple)
    assert len(set(exitdir.__all__)) == len(exitdir.__all__)
    public = {
        name
        for name, value in vars(exitdir).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(exitdir.__all__)


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


def test_import_does_not_import_asyncio_or_ctypes() -> None:
    code = "import sys, exitdir; print(sorted(m for m in ('asyncio', 'ctypes', 'json') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_typed_package() -> None:
    import importlib.resources

    assert importlib.resources.files("exitdir").joinpath("py.typed").is_file()
