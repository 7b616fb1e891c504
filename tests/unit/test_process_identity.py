"""A process's identity, read the moment `Popen` returns, names its command: the kernel sets a
new program's arguments up after Popen stops waiting, and a server recorded without them was
later never recognised, so `promptdag server stop` left it running."""

from __future__ import annotations

import subprocess
import sys

from promptdag.engine.process_identity import identity


def test_the_identity_of_a_process_just_started_names_its_command():
    command = [sys.executable, "-c", "import time; time.sleep(30)"]
    for _ in range(40):  # an empty read came about one time in four before
        process = subprocess.Popen(command, start_new_session=True)
        try:
            seen = identity(process.pid)
            assert seen is not None and seen.command == command
            assert identity(process.pid) == seen  # and it stays the same
        finally:
            process.kill()
            process.wait()


def test_a_process_that_is_gone_has_no_identity():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert identity(process.pid) is None
