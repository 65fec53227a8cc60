"""Exec argv[1:] under a seccomp filter that refuses prctl(PR_SET_CHILD_SUBREAPER) with EPERM.

A real kernel refusal, as a sandbox's seccomp profile (gVisor, a strict container runtime) gives it: the
program runs where a child subreaper cannot be had. x86_64 and aarch64 only (the prctl syscall number).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

PRCTL = {"x86_64": 157, "aarch64": 167}[platform.machine()]
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, PR_SET_CHILD_SUBREAPER = 38, 22, 2, 36
# Classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}: args[0] is at offset 16.
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


program = (SockFilter * 6)(
    SockFilter(BPF_LD_W_ABS, 0, 0, 0),  # the syscall number
    SockFilter(BPF_JEQ_K, 0, 3, PRCTL),  # not prctl: allow
    SockFilter(BPF_LD_W_ABS, 0, 0, 16),  # prctl's option
    SockFilter(BPF_JEQ_K, 0, 1, PR_SET_CHILD_SUBREAPER),
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
fprog = SockFprog(len(program), program)
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) or libc.prctl(
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.cast(ctypes.pointer(fprog), ctypes.c_void_p), 0, 0
):
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[1], sys.argv[1:])
