"""Optional sampling profile of the hub process with py-spy (``--profile DIR``).

py-spy is not a dependency: ``.venv/bin/pip install py-spy``. It records the hub
in ``raw`` (collapsed stacks) format; :func:`summarise` turns that into the
functions with the most inclusive and self time, as percentages of the samples.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """Path of the py-spy executable (venv first), or None."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def start_record(
    pid: int, out: Path, seconds: float, rate: int = 250, gil: bool = True
) -> subprocess.Popen[bytes]:
    """Record ``pid`` for ``seconds`` into ``out`` (collapsed stacks, one per line).

    With ``gil`` only the thread holding the GIL is sampled: the samples then say
    where the hub's single usable core goes (SQLite's fsync, which releases the GIL,
    does not show up).
    """
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--threads",
        "--output",
        str(out),
        "--nonblocking",
        *(["--gil"] if gil else []),
    ]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``file.py:func`` with a short package path."""
    frame = frame.strip()
    if " (" not in frame:
        return frame
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{func}"


def summarise(raw: Path, top: int = 25) -> tuple[int, list[tuple[str, float, float]]]:
    """(samples, [(function, inclusive %, self %)]) sorted by inclusive time."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return 0, []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("thread")]
        frames = [f for f in frames if not f.startswith("process ")]
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    if total == 0:
        return 0, []
    rows = [
        (name, 100.0 * n / total, 100.0 * own.get(name, 0) / total)
        for name, n in inclusive.most_common(top)
    ]
    return total, rows


def per_thread(raw: Path) -> list[tuple[str, int]]:
    """Samples per thread name (``thread (tid): name`` frames), most first."""
    counts: Counter[str] = Counter()
    if not raw.exists():
        return []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        first = stack.split(";", 1)[0]
        name = first.split(": ", 1)[1] if first.startswith("thread") and ": " in first else "?"
        counts[name] += int(count_s)
    return counts.most_common()


def top_self(raw: Path, top: int = 15) -> list[tuple[str, float]]:
    """Functions with the most self time (leaf frames), as % of samples."""
    own: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith(("thread", "process "))]
        if frames:
            own[_frame_name(frames[-1])] += n
    return [(name, 100.0 * n / max(total, 1)) for name, n in own.most_common(top)]
