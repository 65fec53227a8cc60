"""Exec argv[3:] under a seccomp filter that refuses pidfds: argv[1] is ``open`` (pidfd_open), ``signal``
(pidfd_send_signal) or ``both``, argv[2] the errno name the kernel answers with (ENOSYS, EPERM).

A real kernel refusal, as a container runtime's older seccomp profile gives it (it answers EPERM to the
syscalls it does not know). The two syscall numbers are the same on every Linux architecture.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

PIDFD_SEND_SIGNAL, PIDFD_OPEN = 424, 434
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000


class SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    )


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))


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
program = (SockFilter * len(steps))(*steps)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
fprog = SockFprog(len(program), program)
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) or libc.prctl(
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.cast(ctypes.pointer(fprog), ctypes.c_void_p), 0, 0
):
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[3], sys.argv[3:])
