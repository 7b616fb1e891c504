"""What identifies a running process beyond its pid: when it started and its command line.

A pid is reused once its process is gone, so a pid in a file written yesterday may name any
process today. The pair (start time, command line) does not repeat: a process that has both
is the one that was recorded. Read from /proc on Linux, else from `ps`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pydantic import BaseModel

# A process just started (Popen has returned: its exec has begun) may not have its arguments
# in /proc yet: the kernel closes the close-on-exec pipe Popen waits on before it sets them up.
# Read then, a server's identity had no command, so `stop` later refused to signal it. Wait
# for them: at once as a rule, later when a busy machine has not yet run the child's exec on.
ARGUMENTS_WAIT_SECONDS = 10.0
PF_KTHREAD = 0x00200000  # /proc/PID/stat's flags: a kernel thread


class ProcessIdentity(BaseModel):
    """A process as it was seen: its start (kernel ticks since boot on Linux, `ps`'s
    `lstart` elsewhere) and its arguments."""

    started: str
    command: list[str]


def identity(pid: int) -> ProcessIdentity | None:
    """The identity of process `pid` now; None when there is no such process (or it cannot
    be read)."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self/stat").exists():
        try:
            stat = (proc / "stat").read_text()
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) < 20 or fields[0] == "Z":  # a zombie has exited already
                return None
            raw = (proc / "cmdline").read_bytes()
            kernel_thread = int(fields[6]) & PF_KTHREAD  # never has arguments
            give_up = time.monotonic() + ARGUMENTS_WAIT_SECONDS
            while not raw and not kernel_thread and time.monotonic() < give_up:
                time.sleep(0.01)  # see ARGUMENTS_WAIT_SECONDS
                raw = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        command = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        return ProcessIdentity(started=fields[19], command=command)
    try:
        started, line = _ps(pid, "lstart="), _ps(pid, "command=")
    except (OSError, subprocess.SubprocessError):
        return None
    if not started:
        return None
    return ProcessIdentity(started=started, command=line.split())


def _ps(pid: int, field: str) -> str:
    done = subprocess.run(["ps", "-p", str(pid), "-o", field], capture_output=True, text=True,
                          timeout=10)
    return done.stdout.strip() if done.returncode == 0 else ""
