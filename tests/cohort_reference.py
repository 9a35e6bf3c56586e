"""Checksums of what the cohort pipeline writes, to prove a change leaves the results identical.

``tests/test_cohort.py::TestSameResults`` runs the cases below with the current code and
compares the stored arrays (as written to Zarr) and the QC figures with
``tests/cohort_reference.json``.  That file was written by the code *before* the memory
and throughput work of issue 16 (commit 455395d)::

    python tests/cohort_reference.py tests/cohort_reference.json

Rewrite it only when the results are meant to change (a new lung mask in
``helpers/segment.py``, a loader change): run the line above and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_CASE = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"

#: name -> (source, spacing, shape, mode).  "sample" is data/sample/dicom (full size),
#: "small" the small sample (seed 0), "real" the B40f series in ../shared/data.
CASES = {
    "sample-2mm-crop": ("sample", (2.0, 2.0, 2.0), (96, 160, 192), "crop"),
    "sample-1mm-crop": ("sample", (1.0, 1.0, 1.0), (256, 320, 320), "crop"),
    "small-4mm-resize": ("small", (4.0, 4.0, 4.0), (32, 64, 64), "resize"),
    "real-1mm-crop": ("real", (1.0, 1.0, 1.0), (256, 320, 320), "crop"),
}
QC_KEYS = ("slices", "spacing_z_mm", "spacing_y_mm", "spacing_x_mm", "right_lung_ml", "left_lung_ml",
           "lung_outside_pct", "series_uid", "warnings")


def source_of(kind: str, scratch: Path) -> Path | None:
    """The case folder for a kind of source (None when the real case is absent)."""
    if kind == "sample":
        from helpers.sample import ensure_sample

        return ensure_sample() / "dicom"
    if kind == "small":
        from helpers.sample import make_sample

        d = scratch / "small"
        if not d.is_dir():
            make_sample(d, size="small", seed=0)
        return d / "dicom"
    return REAL_CASE if REAL_CASE.is_dir() else None


def fingerprint(source: Path, out: Path, *, spacing, shape, mode) -> dict:
    """Run one case through ``process_case`` into ``out`` and fingerprint what was written."""
    import zarr

    from helpers.cohort import STORE_NAME, process_case

    (out / STORE_NAME).mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = process_case(str(source), "case", str(out), spacing=spacing, shape=shape, mode=mode)
    if row["status"] != "done":
        raise RuntimeError(f"{source}: {row['error']}")
    g = zarr.open_group(str(out / STORE_NAME / "case"), mode="r")
    fp = {}
    for name in ("image", "mask"):
        a = np.ascontiguousarray(g[name][...])
        fp[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                    "sum": int(a.astype(np.int64).sum())}
    attrs = dict(g.attrs)
    fp["spacing"] = [round(float(v), 6) for v in attrs["spacing"]]
    fp["origin"] = [round(float(v), 4) for v in attrs["origin"]]
    fp["qc"] = {k: row[k] for k in QC_KEYS}
    return fp


def compute(names=None, scratch: Path | None = None) -> dict:
    own = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="cohort-ref-")) if own else Path(scratch)
    try:
        result = {}
        for name, (kind, spacing, shape, mode) in CASES.items():
            if names is not None and name not in names:
                continue
            src = source_of(kind, scratch)
            if src is None:
                continue
            result[name] = fingerprint(src, scratch / name, spacing=spacing, shape=shape, mode=mode)
        return result
    finally:
        if own:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    out = Path(sys.argv[1])
    out.write_text(json.dumps(compute(), indent=1, default=str) + "\n")
    print(f"wrote {out}")
