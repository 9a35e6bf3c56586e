"""Loading a CT series: helpers.io.load_series vs SimpleITK's ImageSeriesReader and the 2017 code.

Inputs: the real B40f series (30 slices 512x512, ``../shared/data``, skipped when
absent), a generated 512x512x120 series: the bundled sample when
``helpers.sample.ensure_sample`` exists, else ``helpers/testing/factory.py`` written to a
scratch folder outside the repo (512x512x40 with ``quick``), and (not with
``quick``) the factory series at 512x512x40 compressed as RLE, JPEG Lossless
(SV1, the usual PACS export), JPEG-LS and JPEG 2000 lossless, where decoding dominates.

Timing is the load call only (imports and file generation excluded), run
round-robin after a warm-up (:func:`bench.common.alternate`), median reported.
SimpleITK is timed two ways: ``Execute()`` with the sorted file names already
known ("sitk read", the ratio column), and file-name discovery with
``GetGDCMSeriesFileNames`` + ``Execute()`` ("sitk folder", what a user types to
read a folder).  ``load_series`` always includes discovery by content, series
grouping, every geometry check, per-slice rescale and padding replacement.
Notes give the HU agreement with SimpleITK.  Peak memory comes from a fresh
process per reader (:func:`bench.common.measure_in_subprocess`).

Run alone: ``.venv/bin/python bench/bench_load.py [repeats]`` (prints a table);
in the report: ``python -m bench --only load``.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``helpers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
else:
    from . import common

REAL_B40F = common.REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"
STEP = "load a CT series"


# ---------------------------------------------------------------------- inputs
def generated_series(quick: bool = False) -> tuple[str, Path, Path | None]:
    """``(label, folder, scratch folder to remove or None)`` for the generated series."""
    if not quick:
        try:
            from helpers.sample import ensure_sample

            folder = Path(ensure_sample()) / "dicom"
            if folder.is_dir():
                return "sample CT", folder, None
        except (ImportError, NotImplementedError, AttributeError):
            pass
    from helpers.testing import factory

    n = 40 if quick else 120
    scratch = common.scratch_dir()
    factory.write(factory.clean_datasets(n=n, rows=512, cols=512), scratch / "series")
    return "factory series", scratch / "series", scratch


def compressed_series(syntaxes, n: int = 40) -> tuple[list[tuple[str, Path]], Path]:
    """Factory 512x512xn series compressed with each transfer syntax (pydicom encoders), in a scratch folder."""
    from helpers.testing import factory

    scratch = common.scratch_dir()
    out = []
    for ts in syntaxes:
        dss = factory.clean_datasets(n=n, rows=512, cols=512)
        for ds in dss:
            if ts in factory.IMAGECODECS_ENCODED:  # pydicom has no encoder for it
                factory.compress_with_imagecodecs(ds, ts)
            else:
                ds.compress(ts)
        folder = scratch / ts.replace(".", "_")
        factory.write(dss, folder)
        out.append((f"factory {ts.name.split(' Image')[0].split(',')[0]}", folder))
    return out, scratch


# ---------------------------------------------------------------------- calls
def _ours(folder):
    from helpers.io import load_series

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_series(folder)

    return call


def _sitk_read(folder):
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))

    def call():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(files)
        return r.Execute()

    return call


def _sitk_folder(folder):
    import SimpleITK as sitk

    def call():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        return r.Execute()

    return call


def _legacy(folder):
    from helpers.legacy import get_pixels_hu, load_scan

    def call():
        return get_pixels_hu(load_scan(str(folder)))

    return call


def _legacy_agreement(folder, ref) -> str:
    """How the 2017 ``load_scan`` + ``get_pixels_hu`` result compares with SimpleITK's, or why it failed."""
    import numpy as np

    try:
        hu = _legacy(folder)()
    except Exception as e:  # noqa: BLE001 - the 2017 code's failure is the finding
        return f"fails: {type(e).__name__}: {str(e)[:80]}"
    if hu.shape != ref.shape:
        return f"shape {hu.shape} vs SimpleITK {ref.shape}"
    wrong = int(np.count_nonzero(np.any(hu != ref, axis=(1, 2))))
    if not wrong:
        return "HU identical to SimpleITK"
    if np.array_equal(hu[::-1], ref):
        return "HU right but the stack is upside down (Instance Number runs head to feet here)"
    return f"{wrong} of {ref.shape[0]} slices differ from SimpleITK (Instance Number order / first slice's rescale)"


# factories for measure_in_subprocess (run in a fresh process)
def child_ours(folder: str):
    return _ours(folder)


def child_sitk(folder: str):
    return _sitk_read(folder)


# ---------------------------------------------------------------------- runs
def bench_series(label: str, folder: Path, repeats: int = 5, *, memory: bool = True) -> list[dict]:
    """Rows for one series: ours (ratio vs SimpleITK read), SimpleITK read, SimpleITK folder."""
    import numpy as np
    import SimpleITK as sitk

    impls = {"ours": _ours(folder), "sitk read": _sitk_read(folder), "sitk folder": _sitk_folder(folder)}
    ref = sitk.GetArrayFromImage(impls["sitk read"]())
    legacy_note = _legacy_agreement(folder, ref)
    if not legacy_note.startswith("fails"):
        impls["2017"] = _legacy(folder)
    times = common.alternate(impls, repeats=repeats)
    vol = impls["ours"]()
    same = vol.hu.shape == ref.shape and np.array_equal(vol.hu, ref)
    diff = (vol.hu != ref) if vol.hu.shape == ref.shape else None
    padding_only = diff is not None and bool(np.all(ref[diff] < -1100)) and bool(np.all(vol.hu[diff] <= -1000))
    agree = "HU identical to SimpleITK" if same else (
        f"HU identical to SimpleITK except {np.count_nonzero(diff) / diff.size:.0%} of voxels: padding outside "
        "the field of view, air here, -3024 or below in SimpleITK"
    ) if padding_only else (
        f"max |HU diff| vs SimpleITK {np.abs(vol.hu.astype(np.float64) - ref).max():.3g}"
        if vol.hu.shape == ref.shape else f"shape {vol.hu.shape} vs SimpleITK {ref.shape}"
    )
    med = {k: common.median(v) for k, v in times.items()}
    mem = {}
    if memory:
        mem = {
            "ours": common.measure_in_subprocess("bench.bench_load:child_ours", str(folder)),
            "sitk read": common.measure_in_subprocess("bench.bench_load:child_sitk", str(folder)),
        }
    data = f"{label} {vol.shape[2]}x{vol.shape[1]}x{vol.shape[0]} {vol.hu.dtype}"
    return [
        common.row(step=STEP, implementation="helpers.io.load_series", data=data, times=times["ours"],
                   ratio=med["ours"] / med["sitk read"], ratio_vs="SimpleITK ImageSeriesReader.Execute",
                   peak_mb=mem.get("ours", {}).get("peak_mb"),
                   notes=f"{agree}; all checks; {med['ours'] / med['sitk folder']:.2f}x vs SimpleITK "
                         "incl. file discovery"),
        common.row(step=STEP, implementation="SimpleITK ImageSeriesReader.Execute (file names known)", data=data,
                   times=times["sitk read"], peak_mb=mem.get("sitk read", {}).get("peak_mb")),
        common.row(step=STEP, implementation="SimpleITK GetGDCMSeriesFileNames + Execute", data=data,
                   times=times["sitk folder"]),
    ] + ([
        common.row(step=STEP, implementation="2017 helpers.legacy load_scan + get_pixels_hu", data=data,
                   times=times["2017"], ratio=med["2017"] / med["ours"], ratio_vs="helpers",
                   notes=f"{legacy_note}; no checks")
    ] if "2017" in times else [
        common.row(step=STEP, implementation="2017 helpers.legacy load_scan + get_pixels_hu", data=data,
                   times=[], notes=legacy_note)
    ])


def run(repeats: int = 5, *, quick: bool = False) -> list[dict]:
    """Benchmark rows (see :func:`bench.common.row`) for the real and the generated series."""
    if quick:
        repeats = min(repeats, 3)
    rows = []
    if REAL_B40F.is_dir():
        rows += bench_series("real B40f", REAL_B40F, repeats, memory=not quick)
    label, folder, scratch = generated_series(quick)
    try:
        rows += bench_series(label, folder, repeats, memory=not quick)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if not quick:  # compressed transfer syntaxes: decoding dominates
        from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

        cases, scratch = compressed_series([RLELossless, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless])
        try:
            for label, folder in cases:
                rows += bench_series(label, folder, max(3, repeats // 2), memory=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rows = run(repeats)
    head = f"{'data':38} {'implementation':55} {'median':>9} {'ratio':>6} {'peak MB':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else ""
        print(f"{r['data']:38} {r['implementation']:55} {r['median_s'] * 1000:7.1f}ms {ratio:>6} {peak:>8}")
        if r["notes"]:
            print(f"{'':38}   {r['notes']}")
    print(f"(median of {rows[0]['repeats']} round-robin runs; ratio = load_series / SimpleITK Execute, < 1 is faster)")


if __name__ == "__main__":
    main()
