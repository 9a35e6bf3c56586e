"""Benchmark: helpers.io.load_series against SimpleITK's ImageSeriesReader.

Two series: the real B40f series (30 slices 512x512, ../shared/data, skipped when
absent) and a generated 512x512x120 series (the bundled sample when
``helpers.sample.ensure_sample`` exists, else ``tests/factory.py`` in a temporary
folder).  Runs alternate between the two readers; the table shows the median
wall time of the load call only (imports and file generation excluded) and the
ratio load_series / SimpleITK.  SimpleITK is timed twice: ``Execute`` with the file
names already known (``sitk read``) and file-name discovery + ``Execute`` (what a
user does to read a folder, ``sitk folder``).  load_series always includes
discovery, series grouping, every geometry check and the per-slice rescale.

Run: ``.venv/bin/python bench/bench_load.py [repeats]``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

REAL_B40F = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"


def _generated_series(tmp: Path) -> tuple[str, Path]:
    try:
        from helpers.sample import ensure_sample

        folder = Path(ensure_sample()) / "dicom"
        if folder.is_dir():
            return "sample 512x512x~120", folder
    except (ImportError, NotImplementedError, AttributeError):
        pass
    import factory

    folder = tmp / "factory"
    factory.write(factory.clean_datasets(n=120, rows=512, cols=512), folder)
    return "factory 512x512x120", folder


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_series(name: str, folder: Path, repeats: int = 5) -> dict:
    import SimpleITK as sitk

    from helpers.io import load_series

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_series(folder)

    def sitk_read():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(files)
        return r.Execute()

    def sitk_folder():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        return r.Execute()

    vol = ours()  # warm the page cache and imports for both
    sitk_read()
    times: dict[str, list[float]] = {"ours": [], "sitk read": [], "sitk folder": []}
    for _ in range(repeats):  # alternate so drifts in machine load hit all three alike
        times["ours"].append(_time(ours))
        times["sitk read"].append(_time(sitk_read))
        times["sitk folder"].append(_time(sitk_folder))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "series": name,
        "shape": vol.shape,
        "dtype": str(vol.hu.dtype),
        "load_series_s": med["ours"],
        "sitk_read_s": med["sitk read"],
        "sitk_folder_s": med["sitk folder"],
        "ratio_vs_read": med["ours"] / med["sitk read"],
        "ratio_vs_folder": med["ours"] / med["sitk folder"],
        "repeats": repeats,
    }


def run(repeats: int = 5) -> list[dict]:
    """Median timings (seconds) and ratios for each benchmark series."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if REAL_B40F.is_dir():
            cases.append(("real B40f 512x512x30", REAL_B40F))
        cases.append(_generated_series(Path(tmp)))
        for name, folder in cases:
            rows.append(bench_series(name, folder, repeats))
    return rows


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rows = run(repeats)
    head = f"{'series':24} {'shape':16} {'dtype':7} {'load_series':>11} {'sitk read':>10} {'sitk folder':>11} {'ratio/read':>10} {'ratio/folder':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['series']:24} {str(r['shape']):16} {r['dtype']:7} {r['load_series_s'] * 1000:9.1f}ms "
            f"{r['sitk_read_s'] * 1000:8.1f}ms {r['sitk_folder_s'] * 1000:9.1f}ms {r['ratio_vs_read']:9.2f}x "
            f"{r['ratio_vs_folder']:11.2f}x"
        )
    print(f"(median of {rows[0]['repeats']} alternating runs; ratio < 1 means load_series is faster)")


if __name__ == "__main__":
    main()
