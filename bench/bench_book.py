"""The whole book: ``jupyter-book build`` with every chapter executed, from scratch.

One build (about a minute and a half here; repeats would only measure the same
thing again) into a scratch folder outside the repo, so ``_build/`` is left
alone and nothing is cached.  The sample is generated first (not timed) when it
is missing.  Notes give the target of the book issue (under 5 minutes on the
2-core machine), the heaviest page and the chapters' own execution times as
myst-nb logs them.

Run alone: ``.venv/bin/python bench/bench_book.py``; in the report:
``python -m bench --only book``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
else:
    from . import common

STEP = "build the executed book"
TARGET_S = 300.0


def build(out: Path) -> tuple[int, str, float]:
    """``(exit code, log, seconds)`` of a full, forced, executed build into ``out``."""
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(common.REPO), "--path-output", str(out), "--all", "-v"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def execution_times(log: str) -> list[tuple[str, str]]:
    """``[(chapter number, seconds)]`` from myst-nb's verbose log, in build order."""
    out, current = [], None
    for line in log.splitlines():
        m = re.search(r"book/(\d\d)_\w+", line)
        if m and "xecut" in line:
            current = m.group(1)
        m = re.search(r"Executed notebook in ([\d.]+) seconds", line)
        if m and current:
            out.append((current, m.group(1)))
            current = None
    return out


def heaviest_html(html: Path) -> str:
    pages = sorted(html.glob("book/*.html"), key=lambda p: p.stat().st_size)
    if not pages:
        return "no pages"
    p = pages[-1]
    return f"largest page HTML {p.name} {p.stat().st_size / 1e6:.1f} MB"


def run(repeats: int = 1, *, quick: bool = False) -> list[dict]:
    """One row: seconds of a fresh executed build; skipped with ``quick``."""
    if quick:
        return []
    from helpers.sample import ensure_sample

    ensure_sample()  # generation is not part of the build time
    scratch = common.scratch_dir()
    try:
        code, log, seconds = build(scratch)
        per = ", ".join(f"ch{c} {float(s):.0f} s" for c, s in execution_times(log))
        notes = [f"exit code {code}", f"target < {TARGET_S:.0f} s", heaviest_html(scratch / "_build" / "html")]
        if per:
            notes.append(f"execution: {per}")
        notes.append("one run, sample CT, 2 cores")
        return [common.row(step=STEP, implementation="jupyter-book build --all (execution forced)",
                           data="8 chapters + index, bundled sample", times=[seconds],
                           ratio=seconds / TARGET_S, ratio_vs="the 5-minute target", notes="; ".join(notes))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    for r in run():
        print(f"{r['median_s']:.1f} s  {r['notes']}")
