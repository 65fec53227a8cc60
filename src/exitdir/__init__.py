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

from ._async import CancelOnExit, cancel_on_exit, wait_for_exit
from ._errors import ExitDirError
from ._leader import exit, leader
from ._marker import Marker
from ._token import ExitToken, aware

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
    # errors
    "ExitDirError",
)
