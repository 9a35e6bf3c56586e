"""Shared tools for the benchmarks: fair timing, honest peak memory, rows and the report.

Every ``bench/bench_*.py`` exposes ``run(*, quick=False) -> list[dict]``; each dict
is one table row made with :func:`row`::

    row(step="resample to 1 mm", implementation="helpers.resample.resample",
        data="synthetic 512x512x120", times=[...], peak_mb=181.0,
        ratio=0.55, ratio_vs="SimpleITK sitk.Resample (linear)", notes="MAD 0.00 HU vs SimpleITK")

Timing
------
:func:`alternate` runs the implementations of one step *round-robin* (A B C, B C A,
C A B, ...) after one untimed warm-up each, so a slow moment of the shared machine
hits all of them alike; the table shows the median.  Timings are wall-clock
(``time.perf_counter``) and include threads: SimpleITK and our helper both use
every core they are given.

Peak memory
-----------
:func:`measure_in_subprocess` runs one call in a *fresh* Python process and
reports the peak resident memory (RSS) the call added, in MB (10^6 bytes):

1. the child imports, loads its input (from ``.npy``/``.npz`` so that loading
   has no transient peak) and builds the call;
2. it records its current RSS, then writes ``5`` to ``/proc/self/clear_refs``,
   which makes the kernel reset the high-water mark (VmHWM) to the current RSS;
3. it runs the call and reads VmHWM from ``/proc/self/status``:
   ``peak = VmHWM - RSS_before``.

The kernel counts every page the process touches, whoever allocates it (numpy,
SimpleITK/ITK's C++ buffers, scipy's float64 spline copy), with no sampling gap
and no GIL involved; a fresh process means no memory freed by earlier calls
sits in the allocator waiting to be reused, which would hide part of the peak.
Where ``clear_refs`` is not writable (non-Linux, locked-down containers) the
child falls back to a thread polling ``/proc/self/statm`` every ~1 ms, which
can miss short spikes and cannot run while a C extension holds the GIL; the
report says which method was used.  :func:`peak_rss` is the same measurement
in-process, for quick checks only.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1e6
#: Polling period of the fallback RSS sampler (seconds).
SAMPLER_PERIOD_S = 0.001

COLUMNS = ("step", "implementation", "data", "median_s", "ratio", "ratio_vs", "peak_mb", "notes")


# ---------------------------------------------------------------------- rows
def row(
    *,
    step: str,
    implementation: str,
    data: str,
    times: Iterable[float] | None = None,
    median_s: float | None = None,
    ratio: float | None = None,
    ratio_vs: str = "",
    peak_mb: float | None = None,
    notes: str = "",
    **extra: Any,
) -> dict:
    """One table row; ``median_s`` is computed from ``times`` when not given."""
    times = [float(t) for t in (times or [])]
    if median_s is None and times:
        median_s = statistics.median(times)
    out = {
        "step": step,
        "implementation": implementation,
        "data": data,
        "median_s": median_s,
        "ratio": ratio,
        "ratio_vs": ratio_vs,
        "peak_mb": peak_mb,
        "notes": notes,
        "repeats": len(times),
    }
    out.update(extra)
    return out


def median(xs: Iterable[float]) -> float:
    """Median of the timings (seconds)."""
    return float(statistics.median(list(xs)))


# ---------------------------------------------------------------------- timing
def alternate(impls: dict[str, Callable[[], Any]], *, repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Time several zero-argument callables in rotating round-robin order.

    Parameters
    ----------
    impls : dict of name -> callable
        The implementations of one step, each already bound to its input.
    repeats : int
        Timed calls per implementation.
    warmup : int
        Untimed calls per implementation first (imports, caches, thread pools).

    Returns
    -------
    dict of name -> list of float
        Wall-clock seconds of each timed call.
    """
    names = list(impls)
    for _ in range(warmup):
        for n in names:
            impls[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            gc.collect()
            t0 = time.perf_counter()
            result = impls[n]()
            times[n].append(time.perf_counter() - t0)
            del result
    return times


# ---------------------------------------------------------------------- memory
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_bytes()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(SAMPLER_PERIOD_S)

    def stop(self) -> int:
        self._stop.set()
        self.join()
        return max(self.peak, _rss_bytes())


def peak_rss(fn: Callable[[], Any]) -> tuple[Any, float, str]:
    """Run ``fn()`` here and return ``(result, peak MB above the RSS before, method)``.

    In-process, so memory the allocator kept from earlier calls may be reused
    and hidden; use :func:`measure_in_subprocess` for the published numbers.
    """
    gc.collect()
    before = _rss_bytes()
    if _can_reset_hwm():
        result = fn()
        peak = _status_kb("VmHWM") * 1024
        method = "VmHWM reset via /proc/self/clear_refs"
    else:
        s = _Sampler()
        s.start()
        try:
            result = fn()
        finally:
            peak = s.stop()
        method = f"RSS sampler thread every {SAMPLER_PERIOD_S * 1000:g} ms"
    return result, max(peak - before, 0) / MB, method


_CHILD = r"""
import json, sys, time, importlib
sys.path.insert(0, {repo!r})
from bench.common import peak_rss
mod, _, fn = {target!r}.partition(":")
call = getattr(importlib.import_module(mod), fn)(*{args!r})
t0 = time.perf_counter()
_, peak_mb, method = peak_rss(call)
elapsed = time.perf_counter() - t0
print("BENCH-RESULT " + json.dumps({{"time_s": elapsed, "peak_mb": peak_mb, "method": method}}))
"""


def measure_in_subprocess(target: str, *args: Any, timeout: float = 900.0, env: dict | None = None) -> dict:
    """Time one call and measure its peak memory in a fresh Python process.

    Parameters
    ----------
    target : str
        ``"package.module:factory"``; ``factory(*args)`` runs in the child, loads
        the input and returns the zero-argument callable to measure.
    *args
        JSON/repr-able arguments for the factory (paths, numbers, strings).
    timeout : float
        Seconds before the child is killed.

    Returns
    -------
    dict
        ``time_s`` (one call, wall clock), ``peak_mb`` (MB above the RSS just
        before the call) and ``method`` (how the peak was measured).
    """
    code = _CHILD.format(repo=str(REPO), target=target, args=tuple(args))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=str(REPO),
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    raise RuntimeError(
        f"benchmark child for {target}{tuple(args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


def calibration_call(megabytes: float = 100.0):
    """Factory for :func:`measure_in_subprocess`: a call that fills ``megabytes`` MB of float64 ones.

    ``measure_in_subprocess("bench.common:calibration_call", 100)`` should report
    about 100 MB; the report prints this check next to the machine facts.
    """
    import numpy as np

    n = int(megabytes * MB / 8)
    return lambda: float(np.ones(n).sum())


# ---------------------------------------------------------------------- data
def save_volume(volume, folder: os.PathLike, name: str) -> str:
    """Write a Volume to ``folder/name.npz`` (uncompressed, loads without a transient peak)."""
    import numpy as np

    path = Path(folder) / f"{name}.npz"
    np.savez(
        path, hu=volume.hu, spacing=volume.spacing, origin=volume.origin, direction=volume.direction,
        positions=volume.positions,
    )
    return str(path)


def load_volume(path: str):
    """Read a Volume written by :func:`save_volume`."""
    import numpy as np

    from helpers.volume import Volume

    with np.load(path) as z:
        return Volume(z["hu"], spacing=tuple(z["spacing"]), origin=tuple(z["origin"]),
                      direction=z["direction"], positions=z["positions"])


def scratch_dir() -> Path:
    """A temporary folder for benchmark inputs (removed by the OS; never inside the repo)."""
    return Path(tempfile.mkdtemp(prefix="bench-"))


# ---------------------------------------------------------------------- report
def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
    except Exception:
        return "absent"
    if mod == "SimpleITK":
        return m.Version.VersionString()
    return getattr(m, "__version__", "?")


def machine_facts() -> dict:
    """Cores, CPU model, memory, OS and library versions, commit and time."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PHYS_PAGES") * PAGE / 1e9
    except (ValueError, OSError, AttributeError):
        mem_gb = float("nan")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO, timeout=10).stdout.strip()
    except Exception:
        commit = "?"
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("numpy", "scipy", "SimpleITK", "pydicom", "skimage")},
        "commit": commit,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "memory_method": (
            "VmHWM reset via /proc/self/clear_refs, fresh process per measurement"
            if _can_reset_hwm() else f"RSS sampler thread every {SAMPLER_PERIOD_S * 1000:g} ms, fresh process"
        ),
    }


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict], facts: dict, command: str, runs: dict[str, dict] | None = None) -> str:
    """The report: one table, machine facts, the command, and the rows as JSON for later merges."""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench`; do not edit by hand. -->",
        "",
        f"Command: `{command}`",
        "",
        "| step | implementation | data | median time s | ratio | peak memory MB | notes |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for r in rows:
        versus = f" vs {r['ratio_vs']}" if r.get("ratio_vs") else ""
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}x" + versus
        med = r.get("median_s")
        med_s = "" if med is None else (f"{med:.3f}" if med < 10 else f"{med:.1f}")
        reps = r.get("repeats") or 0
        notes = r.get("notes", "")
        if reps:
            notes = (notes + "; " if notes else "") + f"median of {reps}"
        lines.append(
            "| " + " | ".join(_cell(c) for c in (
                r.get("step", ""), r.get("implementation", ""), r.get("data", ""), med_s, ratio,
                _fmt(r.get("peak_mb"), ".0f"), notes,
            )) + " |"
        )
    lines += chapter_memory_table(rows)
    lines += _cohort_table(rows)
    v = facts.get("versions", {})
    check = facts.get("memory_check")
    lines += [
        "",
        "Ratio: median time of the row divided by the median time of the implementation it names "
        "(below 1 = faster), measured in the same run.  Peak memory: MB (10^6 bytes) of resident "
        f"memory the call added, {facts.get('memory_method', '')}; see `bench/common.py`."
        + (f"  Check: a call filling 100 MB of float64 measured {check:.1f} MB." if check is not None else ""),
        "",
        "## Machine",
        "",
        f"- CPU: {facts.get('cpu')}; cores: {facts.get('cores')} ({facts.get('usable_cores')} usable), "
        f"shared with other jobs while measuring; memory {facts.get('memory_gb')} GB",
        f"- {facts.get('os')}, Python {facts.get('python')}, "
        + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- commit {facts.get('commit')}, {facts.get('date_utc')}",
    ]
    if runs:
        lines += ["", "## Sections", ""]
        for name, info in sorted(runs.items()):
            lines.append(f"- `{name}`: measured {info.get('date_utc')} at commit {info.get('commit')}"
                         + (" (quick)" if info.get("quick") else "")
                         + (f"; {info['error']}" if info.get("error") else ""))
    payload = json.dumps({"rows": rows, "runs": runs or {}}, default=str)
    lines += ["", f"<!-- bench-data {payload} -->", ""]
    return "\n".join(lines)


def _cohort_table(rows: list[dict]) -> list[str]:
    """Markdown lines: cohort throughput before/after (``bench_cohort`` rows; see its ``before_after_table``)."""
    from . import bench_cohort

    return bench_cohort.before_after_table(rows)


def chapter_memory_table(rows: list[dict]) -> list[str]:
    """Markdown lines: kernel peak RSS per chapter, before/after, sample and real case (``bench_chapters`` rows)."""
    from . import bench_chapters as bc

    rows = [r for r in rows if r.get("module") == "bench_chapters" and r.get("chapter")]
    if not rows:
        return []
    now = {(r["dataset"], r["chapter"]): r.get("peak_mb") for r in rows}
    chapters = sorted({r["chapter"] for r in rows})

    def cell(ds, ch):
        before, after = bc.BEFORE.get(ds, {}).get(ch), now.get((ds, ch))
        return ("" if before is None else f"{before:.0f}"), ("" if after is None else f"{after:.0f}")

    out = ["", f"## Kernel peak memory per chapter (MB; target {bc.TARGET_MB:.0f})", "",
           "The kernel's whole resident-memory high-water mark (imports included), one fresh kernel per chapter; "
           "chapter 8 adds its Dask worker processes.  Before: commit 455395d; after: this run.", "",
           "| chapter | sample before | sample after | real case before | real case after |",
           "|---|---:|---:|---:|---:|"]
    for ch in chapters:
        sb, sa = cell("sample", ch)
        rb, ra = cell("real", ch)
        out.append(f"| {ch} | {sb} | {sa} | {rb} | {ra} |")
    return out


def read_previous(path: os.PathLike) -> dict:
    """Rows and run info stored in an earlier report (empty when absent or unreadable)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {"rows": [], "runs": {}}
    m = re.search(r"<!-- bench-data (.*) -->", text)
    if not m:
        return {"rows": [], "runs": {}}
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError:
        return {"rows": [], "runs": {}}
