"""A child that prints `ready`, then the name of every signal it receives, one per line.

It exits 0 after printing the signal named in argv[1] (default TERM), or ignores that signal if argv[2] is
`ignore` (so only SIGKILL ends it).
"""

from __future__ import annotations

import signal
import sys

stop = signal.Signals[f"SIG{sys.argv[1] if len(sys.argv) > 1 else 'TERM'}"]
ignore_stop = len(sys.argv) > 2 and sys.argv[2] == "ignore"
catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
# Blocked and collected with sigwaitinfo: no handler races, and default-ignored signals are seen too.
signal.pthread_sigmask(signal.SIG_BLOCK, catchable)
print("ready", flush=True)
while True:
    info = signal.sigwaitinfo(catchable)
    try:
        name = signal.Signals(info.si_signo).name.removeprefix("SIG")
    except ValueError:  # a real-time signal other than RTMIN and RTMAX has no name: its number
        name = str(info.si_signo)
    print(name, flush=True)
    if info.si_signo == stop and not ignore_stop:
        sys.exit(0)
