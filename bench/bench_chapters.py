"""Memory of each chapter as a resident runs it: the kernel's peak RSS, one fresh kernel per chapter.

Binder gives a user 2 GB; the book's target is **every chapter at or under 1 GB**
(1000 MB, 10^6 bytes) of kernel peak resident memory, on the bundled sample and on
the real case (``DICOM_DIR``).

How it is measured
------------------
Each chapter (MyST ``.md``) is read with jupytext and run top to bottom by
``nbclient`` in a **new** ``python3`` kernel, the way "Run All" does in Jupyter.
The kernel is a separate process, so its memory is read from ``/proc/<pid>``:

* before each cell, ``5`` is written to ``/proc/<pid>/clear_refs``, which resets
  the kernel's high-water mark (VmHWM) to its current RSS; after the cell VmHWM
  is that cell's peak.  The chapter's peak is the largest of them (and of the
  start-up).  The kernel counts every page touched, numpy, ITK or VTK alike, with
  no sampling gap;
* a thread polls every process below the kernel (Dask's nanny and worker
  processes in chapter 8) every 0.2 s and keeps each one's VmHWM; "with workers"
  adds their peaks to the kernel's peak, an upper bound (they may not peak at the
  same moment);
* where ``clear_refs`` cannot be written (not root, not Linux) the kernel's RSS is
  polled instead, which may miss short spikes; the notes say so.

The notes name the three cells with the highest peak (their first line), which is
where to look when a chapter grows.  ``BEFORE`` holds the figures measured the same
way at commit 455395d, before the chapters and helpers were trimmed (issue 10).

Run alone: ``.venv/bin/python -m bench.bench_chapters [--real] [NN ...]`` (prints a
table with every cell); in the report: ``python -m bench --only chapters``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
else:
    from . import common

#: Kernel peak RSS target per chapter (MB, 10^6 bytes): half of Binder's 2 GB.
TARGET_MB = 1000.0
#: Seconds between two polls of the kernel's child processes.
POLL_S = 0.2
#: The real case, next to the repository as the tests expect it (``../shared/data``).
REAL_CASE = common.REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"

#: Kernel peak MB (with workers for chapter 8) at commit 455395d, measured with this module.
BEFORE: dict[str, dict[str, float]] = {
    "sample": {"01": 498, "02": 948, "03": 1587, "04": 769, "05": 508, "06": 906, "07": 959, "08": 632},
    "real": {"01": 249, "02": 369, "03": 1020, "04": 315, "05": 320, "06": 672, "07": 460, "08": 633},
}


def _read_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in bytes (empty when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return {}
    out = {}
    for key in ("VmRSS", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if m:
            out[key] = int(m.group(1)) * 1024
    return out


def _reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Watch(threading.Thread):
    """Polls the kernel and its descendants; keeps each descendant's VmHWM and the kernel's RSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.children: dict[int, int] = {}
        self.kernel_rss_peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            self.kernel_rss_peak = max(self.kernel_rss_peak, _read_status(self.pid).get("VmRSS", 0))
            try:
                kids = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                kids = []
            for k in kids:
                hwm = _read_status(k.pid).get("VmHWM", 0)
                if hwm:
                    self.children[k.pid] = max(self.children.get(k.pid, 0), hwm)
            self._halt.wait(POLL_S)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measure_chapter(path: os.PathLike, *, dicom_dir: str | None = None, timeout: float = 900.0) -> dict:
    """Run one chapter in a fresh kernel and return its memory figures.

    Parameters
    ----------
    path : path-like
        A MyST-markdown chapter (``book/0N_*.md``).
    dicom_dir : str, optional
        ``DICOM_DIR`` for the kernel (the real case); ``None`` reads the sample.
    timeout : float
        Seconds per cell.

    Returns
    -------
    dict
        ``peak_mb`` (kernel), ``workers_mb`` (sum of child processes' peaks),
        ``seconds``, ``method``, and ``cells``: ``[(index, peak_mb, rss_after_mb, first line)]``.
    """
    import jupytext
    from nbclient import NotebookClient

    path = Path(path)
    nb = jupytext.read(path)
    env_before = os.environ.get("DICOM_DIR")
    if dicom_dir is None:
        os.environ.pop("DICOM_DIR", None)
    else:
        os.environ["DICOM_DIR"] = str(dicom_dir)  # the kernel inherits it
    state: dict = {"pid": None, "watch": None, "exact": True, "cells": [], "start_peak": 0}

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})

    def on_cell_start(cell, cell_index, **_):
        if state["pid"] is None:
            state["pid"] = client.km.provisioner.process.pid
            state["start_peak"] = _read_status(state["pid"]).get("VmHWM", 0)
            state["watch"] = _Watch(state["pid"])
            state["watch"].start()
        state["exact"] = _reset_hwm(state["pid"]) and state["exact"]

    def on_cell_executed(cell, cell_index, **_):
        s = _read_status(state["pid"])
        first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
        state["cells"].append((cell_index, s.get("VmHWM", 0) / common.MB, s.get("VmRSS", 0) / common.MB, first[:70]))

    client.on_cell_start = on_cell_start
    client.on_cell_executed = on_cell_executed
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        if state["watch"] is not None:
            state["watch"].stop()
        if env_before is None:
            os.environ.pop("DICOM_DIR", None)
        else:
            os.environ["DICOM_DIR"] = env_before
    seconds = time.perf_counter() - t0
    watch = state["watch"]
    if state["exact"]:
        peak = max([state["start_peak"] / common.MB] + [c[1] for c in state["cells"]])
        method = "kernel VmHWM reset before every cell (/proc/<pid>/clear_refs)"
    else:
        peak = max(watch.kernel_rss_peak / common.MB, max((c[2] for c in state["cells"]), default=0))
        method = f"kernel RSS polled every {POLL_S} s (may miss short spikes)"
    return {"peak_mb": peak, "workers_mb": sum(watch.children.values()) / common.MB if watch else 0.0,
            "n_workers": len(watch.children) if watch else 0, "seconds": seconds,
            "method": method, "cells": state["cells"]}


def chapters() -> list[Path]:
    """The numbered chapters, in order."""
    return sorted((common.REPO / "book").glob("[0-9][0-9]_*.md"))


def _top_cells(cells, n: int = 3) -> str:
    top = sorted(cells, key=lambda c: -c[1])[:n]
    return "; ".join(f"cell {i} {p:.0f} MB `{line}`" for i, p, _rss, line in top)


def run(*, quick: bool = False) -> list[dict]:
    """One row per chapter and data set; the sample only with ``quick``."""
    from helpers.sample import ensure_sample

    ensure_sample()
    datasets = [("sample", None)]
    if not quick and REAL_CASE.is_dir():
        datasets.append(("real case A0002 b40f", str(REAL_CASE)))
    rows = []
    for label, dicom_dir in datasets:
        for ch in chapters():
            num = ch.name[:2]
            res = measure_chapter(ch, dicom_dir=dicom_dir)
            total = res["peak_mb"] + res["workers_mb"]
            key = "sample" if dicom_dir is None else "real"
            before = BEFORE.get(key, {}).get(num)
            notes = [f"{'within' if total <= TARGET_MB else 'OVER'} the {TARGET_MB:.0f} MB target"]
            if before is not None:
                notes.append(f"was {before:.0f} MB at 455395d")
            if res["n_workers"]:
                notes.append(f"kernel {res['peak_mb']:.0f} MB + {res['n_workers']} child processes "
                             f"{res['workers_mb']:.0f} MB")
            notes.append(f"run {res['seconds']:.0f} s")
            notes.append("highest cells: " + _top_cells(res["cells"]))
            rows.append(common.row(step=f"chapter {num} kernel peak RSS",
                                   implementation="nbclient, fresh python3 kernel",
                                   data=label, peak_mb=total, ratio=total / TARGET_MB, ratio_vs="the 1 GB target",
                                   notes="; ".join(notes), chapter=num, dataset=key, kernel_mb=res["peak_mb"],
                                   method=res["method"]))
            print(f"[bench] chapter {num} ({label}): {total:.0f} MB", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.bench_chapters", description="kernel peak RSS per chapter")
    p.add_argument("numbers", nargs="*", help="chapter numbers (01 02 ...); default all")
    p.add_argument("--real", action="store_true", help="run on the real case (DICOM_DIR) instead of the sample")
    p.add_argument("--cells", action="store_true", help="print every cell's peak")
    a = p.parse_args(argv)
    if a.real and not REAL_CASE.is_dir():
        print(f"the real case is absent ({REAL_CASE}): fetch it with python -m helpers.data", file=sys.stderr)
        return 2
    for ch in chapters():
        if a.numbers and ch.name[:2] not in a.numbers:
            continue
        res = measure_chapter(ch, dicom_dir=str(REAL_CASE) if a.real else None)
        print(f"{ch.name}: kernel {res['peak_mb']:.0f} MB, children {res['workers_mb']:.0f} MB "
              f"({res['n_workers']}), {res['seconds']:.0f} s", flush=True)
        cells = res["cells"] if a.cells else sorted(res["cells"], key=lambda c: -c[1])[:5]
        for i, peak, rss, line in cells:
            print(f"   cell {i:3d}  peak {peak:6.0f}  after {rss:6.0f}  {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
