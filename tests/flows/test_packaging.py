"""The installed package: everything under `promptdag` (flows, tasks, deployments included), no
top-level `flows`, `tasks`, `deployments` or `benchmarks` to collide with a user's own, and a
wheel that runs a workflow in a fresh environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_installs_only_promptdag_and_runs_a_workflow(prefect_api: str, tmp_path: Path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("promptdag-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"promptdag"}
    for package in ("flows", "tasks", "deployments"):
        assert f"promptdag/{package}/__init__.py" in names
    assert not any(name.startswith("promptdag/benchmarks") for name in names)

    # A fresh environment: the wheel on top of this one's dependencies (not its editable copy).
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(fresh), "platbase": str(fresh)})["purelib"])
    deps = sysconfig.get_paths()["purelib"]
    (site / "dependencies.pth").write_text(deps + "\n")  # its .pth files (the editable) not run
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install",
         "--no-deps", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": ""}
    probe = subprocess.run(
        [str(fresh / "bin" / "python"), "-c",
         "import promptdag, importlib.util as u; print(promptdag.__file__); "
         "print([n for n in ('flows', 'tasks', 'deployments', 'benchmarks') if u.find_spec(n)])"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    location, squatted = probe.stdout.split("\n")[:2]
    assert location.startswith(str(site)), probe.stdout + probe.stderr
    assert squatted == "[]"
    done = subprocess.run(
        [str(fresh / "bin" / "promptdag"), "run", str(ROOT / "examples" / "seed_api_request.json"),
         "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status": "completed"' in done.stdout
