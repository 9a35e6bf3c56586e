"""Benchmark: the cohort pipeline -- a plain serial loop against a 2-worker Dask LocalCluster.

Data
----
Six small synthetic chest CTs (``helpers.sample.make_sample(size="small", seed=k)``:
128 x 128 pixels of 2.8 mm, 40 slices of 7.5 mm, the same anatomy as the full
sample) preprocessed to 2 mm voxels and cropped around the lungs to
96 x 160 x 192 (z, y, x) -- every step of ``helpers.cohort.preprocess_case``
(load, resample, segment_lungs, lung_qc, crop) plus the Zarr write.  ``--quick``:
three cases at 8 x 6 x 6 mm, 32 x 64 x 64.

Implementations (same cases, same output, a fresh output folder per run)
-----------------------------------------------------------------------
* **serial loop**: ``run_cohort(..., workers=0)`` -- the cases one after the other
  in this process, no Dask (what a for-loop over the cases does).
* **Dask LocalCluster, 2 workers**: ``run_cohort(..., workers=2)`` with the
  default cluster (2 processes x 1 thread).  The time *includes* starting and
  stopping the cluster and the workers' first imports, as a user pays them; that
  start-up cost is also timed alone (cluster + imports in the workers) and the
  throughput without it is given in the notes.

The two alternate round-robin (``bench.common.alternate``); median wall time.
Throughput = cases / median time.  Memory: the serial loop's peak in a fresh
process (``bench.common.measure_in_subprocess``, MB above the RSS after imports);
for the cluster, every worker resets its high-water mark after its imports and
reports it at the end (``/proc/self/status`` VmHWM): the largest worker's peak
above that baseline, and its absolute peak RSS in the notes.

Run: ``.venv/bin/python -m bench --only cohort`` (or ``--quick``).
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402

FULL = {"cases": 6, "spacing": (2.0, 2.0, 2.0), "shape": (96, 160, 192), "repeats": 3}
QUICK = {"cases": 3, "spacing": (8.0, 6.0, 6.0), "shape": (32, 64, 64), "repeats": 1}


def make_cases(root: Path, n: int) -> Path:
    """``n`` small synthetic cases as ``root/case_k`` (DICOM only)."""
    from helpers.sample import make_sample

    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        tmp = root.parent / f"sample-{k}"
        make_sample(tmp, size="small", seed=k)
        shutil.move(str(tmp / "dicom"), str(root / f"case_{k}"))
        shutil.rmtree(tmp)
    return root


def _imports() -> None:
    import zarr  # noqa: F401

    import helpers.cohort  # noqa: F401
    import helpers.io  # noqa: F401
    import helpers.resample  # noqa: F401
    import helpers.segment  # noqa: F401


def serial_call(src: str, scratch: str, spacing, shape):
    """Factory for ``measure_in_subprocess``: the serial loop over the cases (imports done first)."""
    from helpers.cohort import run_cohort

    _imports()
    out = Path(scratch) / "serial-mem"
    shutil.rmtree(out, ignore_errors=True)
    return lambda: run_cohort(src, out, spacing=spacing, shape=shape, workers=0, progress=False)


def _reset_hwm() -> int:
    _imports()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return common._rss_bytes()


def _hwm() -> int:
    return common._status_kb("VmHWM") * 1024


def cluster_startup() -> float:
    """Seconds to start a 2-worker LocalCluster and import the pipeline in its workers, then stop it."""
    import time

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(_imports)
    return time.perf_counter() - t0


def dask_with_memory(src: Path, out: Path, spacing, shape) -> dict:
    """One cluster run measuring each worker's peak RSS above its post-import baseline."""
    from distributed import Client, LocalCluster

    from helpers.cohort import run_cohort

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        try:
            base = client.run(_reset_hwm)
        except OSError:  # clear_refs not writable: absolute peaks only
            base = {w: 0 for w in client.scheduler_info()["workers"]}
        df = run_cohort(src, out, spacing=spacing, shape=shape, client=client, progress=False)
        peaks = client.run(_hwm)
    above = {w: (peaks[w] - base[w]) / common.MB for w in peaks}
    return {"df": df, "above_mb": max(above.values()), "abs_mb": max(peaks.values()) / common.MB,
            "workers": len(peaks)}


def run(*, quick: bool = False) -> list[dict]:
    from helpers.cohort import run_cohort

    cfg = QUICK if quick else FULL
    scratch = common.scratch_dir()
    src = make_cases(scratch / "src", cfg["cases"])
    spacing, shape, n = cfg["spacing"], cfg["shape"], cfg["cases"]
    counter = {"k": 0}

    def fresh() -> Path:
        counter["k"] += 1
        return scratch / f"out-{counter['k']}"

    def serial():
        return run_cohort(src, fresh(), spacing=spacing, shape=shape, workers=0, progress=False)

    def dask2():
        return run_cohort(src, fresh(), spacing=spacing, shape=shape, workers=2, progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = common.alternate({"serial": serial, "dask": dask2}, repeats=cfg["repeats"], warmup=1)
        mem_serial = common.measure_in_subprocess("bench.bench_cohort:serial_call", str(src), str(scratch),
                                                  list(spacing), list(shape))
        mem = dask_with_memory(src, fresh(), spacing, shape)
        startup = common.median([cluster_startup() for _ in range(cfg["repeats"])])
    df = mem["df"]
    ok = int((df["status"] == "done").sum())
    t_serial, t_dask = common.median(times["serial"]), common.median(times["dask"])
    data = (f"{n} small synthetic CTs (40 x 128 x 128, 7.5 x 2.8 x 2.8 mm) -> "
            f"{'x'.join(f'{s:g}' for s in spacing)} mm, crop {'x'.join(map(str, shape))}")
    rows = [
        common.row(
            step="preprocess a cohort (load, resample, segment, crop, Zarr write)",
            implementation="serial loop: run_cohort(workers=0)", data=data, times=times["serial"],
            peak_mb=round(mem_serial["peak_mb"], 1),
            notes=f"{n / t_serial * 60:.1f} cases/min",
        ),
        common.row(
            step="preprocess a cohort (load, resample, segment, crop, Zarr write)",
            implementation="Dask LocalCluster, 2 workers x 1 thread: run_cohort(workers=2)", data=data,
            times=times["dask"], ratio=t_dask / t_serial, ratio_vs="serial loop",
            peak_mb=round(mem["above_mb"], 1),
            notes=(f"{n / t_dask * 60:.1f} cases/min ({t_serial / t_dask:.2f}x the serial throughput), "
                   f"includes {startup:.1f} s of cluster start/stop and worker imports "
                   f"(without it: {n / max(t_dask - startup, 1e-9) * 60:.1f} cases/min); peak memory = largest worker above its post-import RSS "
                   f"(absolute peak RSS {mem['abs_mb']:.0f} MB); {ok}/{n} cases done"),
        ),
    ]
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r, default=str))
