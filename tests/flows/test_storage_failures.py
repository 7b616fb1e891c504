"""No silent loss: a result that cannot be saved is reported and the run does not exit 0; a
full or unwritable result storage is refused before the run starts (exit 2).

A small tmpfs is the full disk (mounting needs root: skipped otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptdag.api import arun
from promptdag.engine.events import TaskEvent, subscribe


def fill(folder: Path) -> None:
    """Write into `folder` until its file system is full."""
    try:
        with open(folder / "filler", "ab") as file:
            while True:
                file.write(b"x" * 4096)
                file.flush()
    except OSError:  # ENOSPC: full
        pass


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_storage_is_refused_before_the_run(prefect_api: str, small_disk: Path,
                                                  tmp_path: Path):
    (small_disk / "storage").mkdir()
    fill(small_disk)
    spec = tmp_path / "one.json"
    spec.write_text(json.dumps({"name": "one", "tasks": [{"name": "a", "prompt": "p"}]}))
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(small_disk / "storage")}
    done = subprocess.run([sys.executable, "-m", "promptdag.cli", "run", str(spec)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"promptdag: error: result storage {small_disk / 'storage'} is full (No space left on "
        "device): free some space or point PREFECT_LOCAL_STORAGE_PATH elsewhere"]


def test_results_that_cannot_be_saved_are_reported(probe, small_disk: Path):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    spec = {"name": "filling up", "config": {"breadth": 1, "model": "probe:x"},
            "tasks": [{"name": f"t{i}", "prompt": f"task {i}", "depends_on": []}
                      for i in range(6)]}

    def fill_after_two(event: TaskEvent) -> None:
        if event.kind == "finished" and event.finished_count == 2:
            fill(small_disk)

    stop = subscribe(fill_after_two)
    try:
        with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: small_disk / "storage"}):
            result = await_run(spec)
    finally:
        stop()
    assert [t.status for t in result.tasks] == ["completed"] * 6
    unsaved = [t.name for t in result.tasks if t.warning]
    assert unsaved == ["t2", "t3", "t4", "t5"]
    assert result.task("t2").warning == "result not saved: No space left on device"
    assert result.summary.unsaved_count == 4

    from promptdag.cli._common import exit_code, render_summary

    assert exit_code(result) == 1
    assert "NOT SAVED: 4 of 6 results were not saved (No space left on device)" in (
        render_summary(result))


def await_run(spec: dict):
    import asyncio

    return asyncio.run(arun(spec))


def test_a_read_only_storage_is_refused_with_one_clear_line(small_disk: Path):
    from promptdag.errors import ConfigError
    from promptdag.tasks.result_persistence import check_storage

    (small_disk / "storage").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(ConfigError) as error:
        check_storage(small_disk / "storage")
    assert str(error.value) == (
        f"result storage {small_disk / 'storage'} is not writable (Read-only file system): "
        "make it writable or point PREFECT_LOCAL_STORAGE_PATH elsewhere")
    assert error.value.exit_code == 2
