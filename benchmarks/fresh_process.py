"""Run a benchmark's measurement in a fresh Python process, and read its memory.

Every benchmark measures each configuration in a new process, so that compiled
functions, caches and peak memory do not carry over from one to the next. The
child is the benchmark script itself, called with ``--child`` and its options;
it prints its measurements as one line of JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(script: str, backend: str, options: list, show_stderr=False) -> dict:
    """Run ``script --child *options`` with ``backend``; its JSON line, parsed."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        [sys.executable, script, "--child", *map(str, options)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if show_stderr else subprocess.PIPE,
        text=True,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    if result.returncode != 0 or not lines:
        sys.stderr.write((result.stderr or "")[-3000:])
        raise RuntimeError(f"{Path(script).name} on {backend} {options} failed")
    return json.loads(lines[-1])


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since it started."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
