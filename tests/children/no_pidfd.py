"""Exec argv[3:] under a seccomp filter that refuses pidfds: argv[1] is ``open`` (pidfd_open), ``signal``
(pidfd_send_signal) or ``both``, argv[2] the errno name the kernel answers with (ENOSYS, EPERM).

A real kernel refusal, as a container runtime's older seccomp profile gives it (it answers EPERM to the
syscalls it does not know). The two syscall numbers are the same on every Linux architecture.
"""

from __future__ import annotations

import errno
import sys

from _seccomp import (
    BPF_JEQ_K,
    BPF_LD_W_ABS,
    BPF_RET_K,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SockFilter,
    exec_under,
)

PIDFD_SEND_SIGNAL, PIDFD_OPEN = 424, 434

refused = {"open": [PIDFD_OPEN], "signal": [PIDFD_SEND_SIGNAL], "both": [PIDFD_OPEN, PIDFD_SEND_SIGNAL]}
numbers = refused[sys.argv[1]]
answer = getattr(errno, sys.argv[2])
# The syscall number, then one test per refused syscall jumping to the refusal, then allow.
steps = [SockFilter(BPF_LD_W_ABS, 0, 0, 0)]
steps += [SockFilter(BPF_JEQ_K, len(numbers) - i, 0, nr) for i, nr in enumerate(numbers)]
steps += [
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | answer),
]
exec_under(steps, sys.argv[3:])
