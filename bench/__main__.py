"""``python -m bench [--quick] [--only NAME ...] [--out docs/benchmarks.md]``.

Discovers every ``bench/bench_*.py``, calls its ``run(quick=...)`` and writes one
markdown table with the machine facts and the command to ``docs/benchmarks.md``.
With ``--only``, the rows of the other modules are kept from the previous report
(they are stored in it as JSON), so one section can be refreshed alone.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import shlex
import sys
import time
import traceback
from pathlib import Path

from helpers.export import atomic_write

from . import common

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules, e.g. ``['bench_load', 'bench_resample']``."""
    return sorted(m.name for m in pkgutil.iter_modules([str(BENCH_DIR)]) if m.name.startswith("bench_"))


def _select(names: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return names
    wanted = {o if o.startswith("bench_") else f"bench_{o}" for o in only}
    unknown = wanted - set(names)
    if unknown:
        raise SystemExit(f"--only {', '.join(sorted(unknown))}: no such benchmark; found {', '.join(names) or 'none'}")
    return [n for n in names if n in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, fewer repeats, skip the slow legacy runs")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only bench_NAME (repeatable); other rows are kept from the previous report")
    parser.add_argument("--out", default=str(common.REPO / "docs" / "benchmarks.md"), help="report path")
    args = parser.parse_args(argv)

    names = _select(discover(), args.only)
    args = argv if argv is not None else sys.argv[1:]
    command = "python -m bench" + ("" if argv is None and len(sys.argv) <= 1 else " " + shlex.join(args))
    previous = common.read_previous(args.out) if args.only else {"rows": [], "runs": {}}
    facts = common.machine_facts()
    facts["memory_check"] = common.measure_in_subprocess("bench.common:calibration_call", 100.0)["peak_mb"]
    rows = [r for r in previous.get("rows", []) if r.get("module") not in names]
    runs = {k: v for k, v in previous.get("runs", {}).items() if k not in names}
    failed = 0
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        info = {"date_utc": facts["date_utc"], "commit": facts["commit"], "quick": args.quick}
        try:
            mod = importlib.import_module(f"bench.{name}")
            params = inspect.signature(mod.run).parameters
            out = mod.run(quick=args.quick) if "quick" in params else mod.run()
            for r in out:
                r.setdefault("module", name)
                rows.append(r)
        except Exception as exc:  # report the failure in the table; never skip silently
            failed += 1
            traceback.print_exc()
            info["error"] = f"FAILED: {type(exc).__name__}: {exc}"
            rows.append(common.row(step=name, implementation="(benchmark failed)", data="",
                                   notes=f"{type(exc).__name__}: {exc}", module=name))
        runs[name] = info
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    order = {n: i for i, n in enumerate(discover())}
    rows.sort(key=lambda r: order.get(r.get("module"), len(order)))
    text = common.render_markdown(rows, facts, command, runs)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(f"[bench] wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
