"""Exec argv[1:] under a seccomp filter that refuses prctl(PR_SET_CHILD_SUBREAPER) with EPERM.

A real kernel refusal, as a sandbox's seccomp profile (gVisor, a strict container runtime) gives it: the
program runs where a child subreaper cannot be had. x86_64 and aarch64 only (the prctl syscall number).
"""

from __future__ import annotations

import errno
import platform
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

PRCTL = {"x86_64": 157, "aarch64": 167}[platform.machine()]
PR_SET_CHILD_SUBREAPER = 36
# Classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}: args[0] is at offset 16.
steps = (
    SockFilter(BPF_LD_W_ABS, 0, 0, 0),  # the syscall number
    SockFilter(BPF_JEQ_K, 0, 3, PRCTL),  # not prctl: allow
    SockFilter(BPF_LD_W_ABS, 0, 0, 16),  # prctl's option
    SockFilter(BPF_JEQ_K, 0, 1, PR_SET_CHILD_SUBREAPER),
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
    SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
)
exec_under(steps, sys.argv[1:])
