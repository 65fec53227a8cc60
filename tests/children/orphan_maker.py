"""Run as the main child of a wrapper that is PID 1 (or a subreaper): make an orphan, check it is reaped.

The orphan is a grandchild whose parent exits first, so it is reparented to the reaper. Once it has exited,
only the reaper can remove its zombie. Prints `reaped` when its /proc entry is gone, or `zombie` if it is
still a zombie after 20 s, and exits 0 or 1 accordingly.
"""

from __future__ import annotations

import os
import sys
import time

read_end, write_end = os.pipe()
if os.fork() == 0:
    grandchild = os.fork()
    if grandchild == 0:
        os.close(write_end)
        os.read(read_end, 1)  # exit only when told: by then our parent is gone and we are an orphan
        os._exit(0)
    os.write(write_end, f"{grandchild}\n".encode().rjust(16))
    os._exit(0)
os.waitpid(-1, 0)
orphan = int(os.read(read_end, 16))
os.write(write_end, b"x")  # let the orphan exit
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if not os.path.exists(f"/proc/{orphan}"):
        print("reaped", flush=True)
        sys.exit(0)
    time.sleep(0.01)
print("zombie", orphan, flush=True)
sys.exit(1)
