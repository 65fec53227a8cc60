"""The one exception type users catch."""

from __future__ import annotations


class ExitDirError(Exception):
    """A problem with the exit directory, a marker name or an exit code.

    The message names the path or value at fault and how to fix it, so the CLI can print it as is.

    >>> import exitdir
    >>> try:
    ...     exitdir.exit(300, directory="/tmp")
    ... except exitdir.ExitDirError as err:
    ...     print(err)
    exit code 300 is outside 0..255: use an integer from 0 to 255
    """
