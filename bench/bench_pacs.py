"""Query and retrieve one CT series from a local Orthanc: DICOMweb against DIMSE.

The sample series (``data/sample``, generated if absent) and the real B40f series in
``../shared/data`` when present are C-STOREd once into a throw-away Orthanc on 127.0.0.1
(``helpers.pacs.orthanc_server``); then, alternating:

* series-level query: ``helpers.pacs.qido`` (QIDO-RS) against ``helpers.pacs.c_find`` (C-FIND);
* retrieve of the whole series into a new folder: ``helpers.pacs.wado_series`` (WADO-RS)
  against ``helpers.pacs.c_get_series`` (C-GET, which also runs a C-FIND for the count).

Each route's row gives its ratio to the other route measured in the same run. Loopback
only: a hospital network adds latency per request (many for C-FIND/C-GET sub-operations,
one per series for WADO-RS). Skipped when Orthanc is not installed.
"""

from __future__ import annotations

import shutil
import sys

from . import common

STEP_Q = "series query (one study)"
STEP_R = "retrieve one CT series to a folder"


def bench_series(label: str, folder, repeats: int) -> list[dict]:
    from helpers import pacs

    scratch = common.scratch_dir()
    rows = []
    try:
        with pacs.orthanc_server(workdir=scratch / "orthanc") as server:
            n, t_store = pacs.timed(pacs.c_store, folder, server)
            first = pacs.first_header(folder)
            study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
            q = common.alternate({
                "QIDO-RS": lambda: pacs.qido(server, "SERIES", study_uid=study),
                "C-FIND": lambda: pacs.c_find(server, "SERIES", StudyInstanceUID=study),
            }, repeats=repeats)
            k = iter(range(10 ** 6))

            def fresh():
                return scratch / f"r{next(k)}"

            r = common.alternate({
                "WADO-RS": lambda: pacs.wado_series(server, study, series, fresh()),
                "C-GET": lambda: pacs.c_get_series(server, study, series, fresh()),
            }, repeats=repeats)
        notes = f"{n} instances; C-STORE of the series took {t_store:.1f} s"
        for step, times, pair in ((STEP_Q, q, ("QIDO-RS", "C-FIND")), (STEP_R, r, ("WADO-RS", "C-GET"))):
            a, b = pair
            ma, mb = common.median(times[a]), common.median(times[b])
            rows.append(common.row(step=step, implementation=f"helpers.pacs {a}", data=label, times=times[a],
                                   ratio=ma / mb, ratio_vs=b, notes=notes))
            rows.append(common.row(step=step, implementation=f"helpers.pacs {b}", data=label, times=times[b],
                                   ratio=mb / ma, ratio_vs=a, notes=notes))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def run(repeats: int = 5, *, quick: bool = False) -> list[dict]:
    """Benchmark rows for the sample and, when present, the real B40f series."""
    from helpers import pacs
    from helpers.sample import ensure_sample

    from .bench_load import REAL_B40F

    if pacs.find_orthanc() is None:
        print("bench_pacs: Orthanc is not installed; skipped", file=sys.stderr)
        return []
    if quick:
        repeats = min(repeats, 3)
    rows = bench_series("synthetic sample (120 x 512 x 512)", ensure_sample() / "dicom", repeats)
    if REAL_B40F.is_dir():
        rows += bench_series("real B40f", REAL_B40F, repeats)
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(f"{r['data']:36} {r['step']:36} {r['implementation']:24} {r['median_s']:.3f} s  "
              f"{r['ratio']:.2f}x vs {r['ratio_vs']}")
