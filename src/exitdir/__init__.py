"""exitdir: tell processes to exit through a shared directory.

The leader writes a marker into ``$EXIT_DIR``; every follower watching it notices within a fraction of a
millisecond and exits. Wire-compatible with Chainguard's Go ``exitdir`` in both directions.

>>> import exitdir, tempfile
>>> d = tempfile.mkdtemp()
>>> token = exitdir.aware(d)      # follower
>>> _ = exitdir.exit(directory=d)  # leader
>>> token.wait(timeout=5)
True
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = (
    # leader
    "exit",
    "leader",
    # follower
    "aware",
    "ExitToken",
    "Marker",
    # asyncio
    "wait_for_exit",
    "cancel_on_exit",
    "CancelOnExit",
    # readiness
    "Dependency",
    "wait_ready",
    "announce_ready",
    "Announcement",
    # stopping what was not started here
    "quit_sidecar",
    "stop_process",
    "Stopped",
    # errors
    "ExitDirError",
)

# Where each public name lives. They are loaded on first use (PEP 562), so `import exitdir` costs almost
# nothing and a leader, or the CLI, never loads the follower's threading or asyncio machinery.
_HOME = {
    "exit": "_leader",
    "leader": "_leader",
    "aware": "_token",
    "ExitToken": "_token",
    "Marker": "_marker",
    "wait_for_exit": "_async",
    "cancel_on_exit": "_async",
    "CancelOnExit": "_async",
    "Dependency": "_ready",
    "wait_ready": "_ready",
    "announce_ready": "_ready",
    "Announcement": "_ready",
    "quit_sidecar": "_stops",
    "stop_process": "_targets",
    "Stopped": "_stops",
    "ExitDirError": "_errors",
}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._async import CancelOnExit, cancel_on_exit, wait_for_exit
    from ._errors import ExitDirError
    from ._leader import exit, leader
    from ._marker import Marker
    from ._ready import Announcement, Dependency, announce_ready, wait_ready
    from ._stops import Stopped, quit_sidecar
    from ._targets import stop_process
    from ._token import ExitToken, aware
else:
    # Hidden from type checkers, which see the imports above: a misspelt name still fails type checking.

    def __getattr__(name: str) -> object:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module 'exitdir' has no attribute {name!r}")
        import sys

        # __import__ and sys.modules are built in; `import importlib` would read importlib/__init__.py.
        __import__(f"exitdir.{home}")
        value = getattr(sys.modules[f"exitdir.{home}"], name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
