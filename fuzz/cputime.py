#!/usr/bin/env python3
"""Runs a command and writes the user and system CPU seconds it and every process under it
used, orphans included, to a file: `cputime.py OUT CMD [ARG...]`; exits with the command's
status.

`/usr/bin/time` undercounts AFL++: at the end of a run afl-fuzz kills its fork server, so the
persistent-mode target under it is reaped by init and its CPU time never reaches afl-fuzz's
parent. Here the script makes itself a child subreaper, so orphans are reparented to it and
reaped by it, and their time is counted.
"""
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def main():
    if len(sys.argv) < 3:
        print("usage: cputime.py OUT CMD [ARG...]", file=sys.stderr)
        return 2
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    command = subprocess.Popen(sys.argv[2:])
    status = None
    deadline = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == command.pid:
            status = os.waitstatus_to_exitcode(raw)
        elif pid == 0:
            # Orphans still alive 5 s after the command ended (a parked persistent-mode
            # target) are ended, so they are reaped and counted.
            if status is not None:
                deadline = deadline or time.time() + 5
                if time.time() > deadline:
                    for c in children():
                        for s in (signal.SIGKILL, signal.SIGCONT):
                            try:
                                os.kill(c, s)
                            except OSError:
                                pass
            time.sleep(0.2)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(sys.argv[1], "w") as f:
        f.write(f"{used.ru_utime:.2f} {used.ru_stime:.2f}\n")
    return status if status is not None and status >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
