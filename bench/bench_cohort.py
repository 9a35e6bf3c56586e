"""Benchmark: the cohort pipeline at real scale -- serial loop, 1 and 2 Dask workers, stage by stage.

Data (a real-size five-scan mix, like the one in issue 16)
---------------------------------------------------------
* three full-size synthetic chest CTs, ``helpers.sample.make_sample(size="full", seed=k)``
  for k = 0, 1, 2: 120 slices of 512 x 512, 2.5 x 0.70 x 0.70 mm;
* one *tall* case made from seed 3: 134 slices of 512 x 512 at 3 mm with 1.074 mm
  pixels (a 550 mm field of view), the issue's largest scan (402 x 550 x 550 at 1 mm);
* the real case in ``../shared/data`` when present (Lung-PET-CT-Dx A0002, B40f: 30 slices
  of 512 x 512, 8 x 0.65 x 0.65 mm); otherwise a fourth full-size sample (seed 4).

Every case goes to 1 mm voxels, cropped around the lungs to 256 x 320 x 320 (z, y, x) and
written to Zarr -- the issue's ``python -m helpers preprocess SRC OUT --spacing 1 1 1
--shape 256 320 320``.  ``--quick``: two small samples, 4 mm, 48 x 64 x 64.

Runs (each in a fresh Python process, so no run inherits another's memory)
--------------------------------------------------------------------------
* **serial loop**: ``run_cohort(..., workers=0)``.
* **Dask, 1 worker** and **Dask, 2 workers**: ``run_cohort(..., workers=N)`` with the default
  LocalCluster (N processes, threads per worker from ``helpers.cohort.default_threads``).
  Wall time *includes* starting the cluster, as a user pays it; the cluster start alone is
  reported in the notes.

Figures: wall time (median of the repeats), cases/min, CPU-seconds per case (user + system of
the process, or of every worker process), peak RSS per worker (VmHWM of the process that runs
the cases, absolute: what the operating system must provide), and the machine's load average
before each run (the machine is shared).  A **per-stage breakdown** runs the tall case once more
in a fresh process: load (read + decode + HU, one step inside ``load_series``), resample,
segment, crop/resize, write; for each stage its seconds and the process's peak RSS during it
(``/proc/self/clear_refs`` resets the high-water mark before each stage).

Run: ``.venv/bin/python -m bench --only cohort`` (or ``--quick``).  ``python -m bench.bench_cohort
--mix DIR`` prints the same rows as JSON for a case folder you made before (no generation).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402

FULL = {"spacing": (1.0, 1.0, 1.0), "shape": (256, 320, 320), "repeats": 2}
QUICK = {"spacing": (4.0, 4.0, 4.0), "shape": (48, 64, 64), "repeats": 1}
#: The tall case: slices, slice spacing (mm) and pixel size (mm) of the issue's largest scan.
TALL = {"slices": 134, "slice_mm": 3.0, "pixel_mm": 550.0 / 512}
REAL_CASE = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"
STEPS = ("load", "resample", "segment", "crop", "qc", "write")
#: The same benchmark before the throughput work of issue 16 (run at f167727, docs/benchmarks.md then):
#: per run, wall s, cases/min, CPU-s per case, peak RSS per worker MB, load averages; per stage of the
#: tall case, CPU-s.
BEFORE = {
    "commit": "f167727",
    "serial": (46.4, 6.5, 7.7, 1221, "4.4, 3.3"),
    "dask1": (42.8, 7.0, 7.9, 1176, "3.8, 3.3"),
    "dask2": (46.2, 6.5, 8.8, 1178, "3.0, 2.7"),
    "stages": {"load": 0.09, "resample": 0.69, "segment": 12.36, "crop": 0.09, "qc": 0.62, "write": 0.72},
}


def before_note(name: str) -> str:
    """"before (commit): ..." for a run ("serial", "dask1", "dask2") or "stages"; "" if unknown."""
    b = BEFORE.get(name)
    if not b:
        return ""
    if name == "stages":
        parts = ", ".join(f"{k} {v:.2f}" for k, v in b.items())
        return f"before ({BEFORE['commit']}, CPU-s): {parts}"
    wall, per_min, cpu, peak, _loads = b
    return (f"before ({BEFORE['commit']}): {wall} s, {per_min} cases/min, {cpu} CPU-s per case, "
            f"{peak} MB per worker")


RUN_LABELS = {"serial": "serial loop", "dask1": "Dask, 1 worker", "dask2": "Dask, 2 workers"}


def before_after_table(rows: list[dict]) -> list[str]:
    """Markdown lines: the cohort runs and the tall case's stages, before (:data:`BEFORE`) and after (this run).

    Read from the ``bench_cohort`` rows of a report (wall time, peak memory; cases/min, CPU-s per
    case and the stage CPU-seconds from their notes), so it can be drawn from stored rows too.
    """
    import re

    rows = [r for r in rows if r.get("module") == "bench_cohort"]
    if not rows:
        return []
    out = ["", f"## Cohort throughput before ({BEFORE['commit']}) and after", "",
           "The five-scan mix of `bench/bench_cohort.py` to 1 mm, crop 256x320x320.  Wall times and "
           "cases/min depend on the machine's load (the last column: load averages of the 2-core machine at "
           "the start of each repeat); CPU-s per case much less.  \"2 idle cores\": 2 x 60 / CPU-s per case, "
           "the rate the run would reach with both cores to itself (cluster start not counted).", "",
           "| run | wall s | cases/min | CPU-s per case | on 2 idle cores, cases/min | peak RSS per worker MB "
           "| load averages |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        impl = r.get("implementation", "")
        key = next((k for k, lab in (("serial", "serial loop"), ("dask1", "1 worker"), ("dask2", "2 workers"))
                    if lab in impl), None)
        if key is None or not r.get("step", "").startswith("preprocess a cohort"):
            continue
        notes = r.get("notes", "")
        per_min = re.search(r"([\d.]+) cases/min", notes)
        cpu = re.search(r"([\d.]+) CPU-s per case", notes)
        loads = re.search(r"load averages \[([\d., ]+)\]", notes)
        b = BEFORE[key]
        idle = f"{120 / b[2]:.0f} -> " + (f"{120 / float(cpu.group(1)):.0f}" if cpu else "")
        rate = per_min.group(1) if per_min else ""
        out.append(f"| {RUN_LABELS[key]} | {b[0]} -> {r.get('median_s')} | {b[1]} -> {rate} "
                   f"| {b[2]} -> {cpu.group(1) if cpu else ''} | {idle} | {b[3]} -> {_fmt_mb(r.get('peak_mb'))} "
                   f"| {b[4]} -> {loads.group(1) if loads else ''} |")
    st = next((r for r in rows if r.get("step", "").startswith("one case, stage by stage")), None)
    if st:
        after = dict(re.findall(r"(\w+) [\d.]+ s \(([\d.]+) CPU-s\)", st.get("notes", "")))
        out += ["", f"Stages of the tall case ({st.get('data', '')}), CPU-s:", "",
                "| stage | before | after |", "|---|---:|---:|"]
        for k, v in BEFORE["stages"].items():
            out.append(f"| {k} | {v:.2f} | {after.get(k, '')} |")
    return out


def _fmt_mb(v) -> str:
    return "" if v is None else f"{float(v):.0f}"


# ------------------------------------------------------------------ data
def _sample_case(root: Path, name: str, *, seed: int, size: str) -> Path:
    from helpers.sample import make_sample

    tmp = root / f".gen-{name}"
    make_sample(tmp, size=size, seed=seed)
    shutil.move(str(tmp / "dicom"), str(root / name))
    shutil.rmtree(tmp)
    return root / name


def make_tall_case(src: Path, dest: Path, *, slices: int = TALL["slices"], slice_mm: float = TALL["slice_mm"],
                   pixel_mm: float = TALL["pixel_mm"]) -> Path:
    """A real-size tall series from a sample series: ``slices`` planes ``slice_mm`` apart, ``pixel_mm`` pixels.

    Planes are picked from ``src`` by nearest position (the anatomy is stretched, the pixel data
    untouched); every plane gets new Series/SOP Instance UIDs, position, Slice Thickness and
    Pixel Spacing.  The source folder is only read.
    """
    import pydicom
    from pydicom.uid import generate_uid

    dss = [pydicom.dcmread(p) for p in sorted(Path(src).rglob("*")) if p.is_file()]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    dest.mkdir(parents=True)
    series = generate_uid(entropy_srcs=["bench tall case", str(slices), str(slice_mm)])
    x0 = -pixel_mm * (int(dss[0].Columns) - 1) / 2
    y0 = -pixel_mm * (int(dss[0].Rows) - 1) / 2
    for k in range(slices):
        ds = dss[round(k * (len(dss) - 1) / (slices - 1))]
        ds = pydicom.dcmread(ds.filename)  # a fresh copy: the same source plane may be used twice
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(-200.0 + k * slice_mm, 4)]
        ds.SliceLocation = round(-200.0 + k * slice_mm, 4)
        ds.PixelSpacing = [round(pixel_mm, 6), round(pixel_mm, 6)]
        ds.SliceThickness = slice_mm
        ds.InstanceNumber = slices - k
        ds.SeriesDescription = f"Chest {slice_mm:g}mm tall synthetic (bench)"
        ds.save_as(dest / f"IM{k:04d}.dcm", enforce_file_format=True)
    return dest


def make_mix(root: Path, *, quick: bool = False) -> tuple[Path, list[str]]:
    """The cases as sub-folders of ``root / "src"``; returns (source root, one description per case)."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    if quick:
        for k in range(2):
            _sample_case(src, f"sample_s{k}", seed=k, size="small")
        return src, ["2 small samples (40 x 128 x 128, 7.5 x 2.8 x 2.8 mm)"]
    desc = []
    for k in range(3):
        _sample_case(src, f"sample_s{k}", seed=k, size="full")
    desc.append("3 full-size samples (120 x 512 x 512, 2.5 x 0.70 x 0.70 mm; seeds 0-2)")
    tmp = _sample_case(root, "tall-src", seed=3, size="full")
    make_tall_case(tmp, src / "tall_134x3mm")
    shutil.rmtree(tmp)
    desc.append(f"a tall case ({TALL['slices']} x 512 x 512, {TALL['slice_mm']:g} x {TALL['pixel_mm']:.3f} mm)")
    if (REAL_CASE / "").is_dir():
        os.symlink(REAL_CASE, src / "real_A0002_b40f")  # read only: sources are never written
        desc.append("the real case Lung_Dx-A0002 B40f (30 x 512 x 512, 8 x 0.65 x 0.65 mm)")
    else:
        _sample_case(src, "sample_s4", seed=4, size="full")
        desc.append("a fourth full-size sample (seed 4; ../shared/data absent)")
    return src, desc


# ------------------------------------------------------------------ children (fresh processes)
def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _hwm_mb() -> float:
    return common._status_kb("VmHWM") * 1024 / common.MB


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _imports() -> None:
    import zarr  # noqa: F401

    import helpers.cohort  # noqa: F401
    import helpers.io  # noqa: F401
    import helpers.resample  # noqa: F401
    import helpers.segment  # noqa: F401


def _worker_start() -> dict:
    _imports()
    try:
        _reset_hwm()
    except OSError:
        pass
    return {"cpu": _cpu_s(), "rss_mb": common._rss_bytes() / common.MB}


def _worker_end() -> dict:
    return {"cpu": _cpu_s(), "hwm_mb": _hwm_mb()}


def child_run(src: str, out: str, workers: int, spacing, shape) -> dict:
    """One ``run_cohort`` in this (fresh) process; the figures as a dict."""
    import warnings

    from helpers.cohort import run_cohort

    _imports()
    warnings.simplefilter("ignore")
    load = os.getloadavg()[0]
    base_rss = common._rss_bytes() / common.MB
    if workers == 0:
        _reset_hwm()
        c0, t0 = _cpu_s(), time.perf_counter()
        df = run_cohort(src, out, spacing=spacing, shape=shape, workers=0, progress=False)
        wall = time.perf_counter() - t0
        return {"wall": wall, "cpu": _cpu_s() - c0, "peak_mb": [_hwm_mb()], "base_mb": base_rss,
                "load": load, "startup": 0.0, "status": list(df["status"]),
                "seconds": [float(s) for s in df["seconds"]]}
    from distributed import Client, LocalCluster

    try:
        from helpers.cohort import default_threads
    except ImportError:  # before issue 16: one thread per worker
        threads = 1
    else:
        threads = default_threads(workers)
    t0 = time.perf_counter()
    kw = {"threads_per_worker": threads} if threads > 1 else {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        start = client.run(_worker_start)
        startup = time.perf_counter() - t0
        df = run_cohort(src, out, spacing=spacing, shape=shape, client=client, progress=False, **kw)
        end = client.run(_worker_end)
    wall = time.perf_counter() - t0
    cpu = sum(end[w]["cpu"] - start[w]["cpu"] for w in end)
    peaks = {w: end[w]["hwm_mb"] for w in end}
    if "peak_rss_mb" in df:  # each case resets its worker's high-water mark: the peak is the largest case's
        for w, p in df.groupby("worker")["peak_rss_mb"].max().items():
            if w in peaks and p == p:
                peaks[w] = max(peaks[w], float(p))
    return {"wall": wall, "cpu": cpu, "peak_mb": sorted(peaks.values(), reverse=True),
            "base_mb": max(s["rss_mb"] for s in start.values()), "load": load, "startup": startup,
            "threads": threads, "status": list(df["status"]), "seconds": [float(s) for s in df["seconds"]]}


def _stages_by_hand(case, out, *, spacing, shape, hook):
    """The steps of the original ``preprocess_case`` + ``write_case``, one by one (for the 'before' runs)."""
    import numpy as np

    from helpers.cohort import CaseResult, write_case
    from helpers.io import load_series
    from helpers.resample import crop_or_pad, resample
    from helpers.segment import lung_qc, segment_lungs

    t = time.perf_counter()
    vol = load_series(case)
    hook("load", time.perf_counter() - t)
    t = time.perf_counter()
    res = resample(vol, spacing=spacing)
    hook("resample", time.perf_counter() - t)
    t = time.perf_counter()
    labels = np.asarray(segment_lungs(res), dtype=np.uint8)
    hook("segment", time.perf_counter() - t)
    t = time.perf_counter()
    lung_qc(labels, res, warn=False)
    hook("qc", time.perf_counter() - t)
    t = time.perf_counter()
    image = crop_or_pad(res, shape, center="mask", mask=labels)
    mask = crop_or_pad(res.with_array(labels), shape, center="mask", mask=labels).hu.astype(np.uint8)
    image = image.with_array(np.asarray(image.hu, dtype=np.float32))
    hook("crop", time.perf_counter() - t)
    t = time.perf_counter()
    write_case(CaseResult(image=image, mask=mask, qc={}), Path(out) / "case", case_id="case")
    hook("write", time.perf_counter() - t)
    return {"case": f"{Path(case).name}: {vol.shape} -> {res.shape}", "resampled_mb": res.hu.nbytes / common.MB}


def child_stages(case: str, out: str, spacing, shape) -> dict:
    """Each stage of one case, timed, with the process's peak RSS during it."""
    import warnings

    import numpy as np

    try:
        from helpers.cohort import stage_profile
    except ImportError:  # the code before issue 16 had no stage hook: the same steps, by hand
        stage_profile = _stages_by_hand

    _imports()
    warnings.simplefilter("ignore")
    stages = {}
    cpu = [_cpu_s()]

    def hook(name, t):
        now = _cpu_s()
        stages[name] = {"s": t, "cpu_s": now - cpu[0], "peak_mb": _hwm_mb()}
        _reset_hwm()
        cpu[0] = _cpu_s()

    _reset_hwm()
    base = common._rss_bytes() / common.MB
    info = stage_profile(case, Path(out), spacing=spacing, shape=shape, hook=hook)
    info = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in info.items()}
    return {"stages": stages, "base_mb": base, "peak_mb": max(s["peak_mb"] for s in stages.values()), **info}


def _child(fn: str, *args, env: dict | None = None) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from bench.bench_cohort import {fn}; "
            f"print('BENCH-RESULT ' + json.dumps({fn}(*json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **(env or {})})
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    raise RuntimeError(f"benchmark child {fn}{args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# ------------------------------------------------------------------ measuring
def measure(src: Path, scratch: Path, *, spacing, shape, repeats: int, stage_case: str | None,
            env: dict | None = None) -> dict:
    """Alternate serial / 1 worker / 2 workers ``repeats`` times (fresh output folder each), then the stages."""
    runs: dict[str, list[dict]] = {"serial": [], "dask1": [], "dask2": []}
    workers = {"serial": 0, "dask1": 1, "dask2": 2}
    k = 0
    names = list(runs)
    for r in range(repeats):
        for name in names[r % 3:] + names[: r % 3]:
            k += 1
            out = scratch / f"out-{k}"
            runs[name].append(_child("child_run", str(src), str(out), workers[name], list(spacing), list(shape),
                                     env=env))
            shutil.rmtree(out, ignore_errors=True)
    stages = None
    if stage_case is not None:
        out = scratch / "out-stages"
        stages = _child("child_stages", str(src / stage_case), str(out), list(spacing), list(shape), env=env)
        shutil.rmtree(out, ignore_errors=True)
    return {"runs": runs, "stages": stages}


def summarise(res: dict, n_cases: int) -> dict:
    """Median wall, cases/min, CPU s per case, peak RSS per worker (max over repeats), loads."""
    out = {}
    for name, rs in res["runs"].items():
        if not rs:
            continue
        wall = common.median(r["wall"] for r in rs)
        out[name] = {
            "wall_s": round(wall, 1),
            "walls": [round(r["wall"], 1) for r in rs],
            "cases_per_min": round(n_cases / wall * 60, 1),
            "cpu_s_per_case": round(common.median(r["cpu"] for r in rs) / n_cases, 1),
            "peak_mb_per_worker": round(max(max(r["peak_mb"]) for r in rs)),
            "startup_s": round(common.median(r["startup"] for r in rs), 1),
            "loads": [round(r["load"], 1) for r in rs],
            "threads": rs[0].get("threads", ""),
            "failed": sum(s == "failed" for r in rs for s in r["status"]),
        }
    return out


def run(*, quick: bool = False) -> list[dict]:
    cfg = QUICK if quick else FULL
    scratch = common.scratch_dir()
    try:
        src, desc = make_mix(scratch, quick=quick)
        n = len([p for p in src.iterdir()])
        stage_case = "sample_s0" if quick else "tall_134x3mm"
        res = measure(src, scratch, spacing=cfg["spacing"], shape=cfg["shape"], repeats=cfg["repeats"],
                      stage_case=stage_case)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows_from(res, n, desc, cfg)


def rows_from(res: dict, n: int, desc: list[str], cfg: dict) -> list[dict]:
    s = summarise(res, n)
    sp = "x".join(f"{v:g}" for v in cfg["spacing"])
    data = f"{n} cases: " + "; ".join(desc) + f" -> {sp} mm, crop {'x'.join(map(str, cfg['shape']))}"
    step = "preprocess a cohort (load+HU, resample, segment, crop, Zarr write)"
    rows = []
    labels = {"serial": "serial loop: run_cohort(workers=0)",
              "dask1": "Dask LocalCluster, 1 worker: run_cohort(workers=1)",
              "dask2": "Dask LocalCluster, 2 workers: run_cohort(workers=2)"}
    base = s["serial"]["wall_s"]
    cores = os.cpu_count() or 1
    for name, f in s.items():
        rows.append(common.row(
            step=step, implementation=labels[name] + (
                f" x {f['threads']} thread{'s' if f['threads'] != 1 else ''}" if f["threads"] else ""),
            data=data, median_s=f["wall_s"], ratio=(f["wall_s"] / base) if name != "serial" else None,
            ratio_vs="serial loop" if name != "serial" else "", peak_mb=f["peak_mb_per_worker"],
            notes=(f"{f['cases_per_min']} cases/min; {f['cpu_s_per_case']} CPU-s per case "
                   f"(so about {cores * 60 / max(f['cpu_s_per_case'], 1e-9):.0f} cases/min if the run had "
                   f"{cores} idle cores to itself); peak RSS per worker "
                   f"{f['peak_mb_per_worker']} MB (absolute); wall times {f['walls']} s at load averages "
                   f"{f['loads']}" + (f"; cluster start {f['startup_s']} s included" if name != "serial" else "")
                   + (f"; {f['failed']} failed" if f["failed"] else "")
                   + (f"; {before_note(name)}" if before_note(name) else "")),
        ))
    st = res.get("stages")
    if st:
        parts = "; ".join(f"{k} {v['s']:.2f} s ({v.get('cpu_s', 0):.2f} CPU-s) / {v['peak_mb']:.0f} MB"
                          for k, v in st["stages"].items())
        rows.append(common.row(
            step="one case, stage by stage (seconds / peak RSS during the stage)",
            implementation="helpers.cohort.stage_profile", data=st.get("case", ""),
            median_s=sum(v["s"] for v in st["stages"].values()), peak_mb=round(st["peak_mb"]),
            notes=parts + f"; resampled float32 output {st.get('resampled_mb', 0):.0f} MB"
            + (f"; {before_note('stages')}" if before_note("stages") else ""),
        ))
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mix", help="an existing source root (made by make_mix); skips generation")
    ap.add_argument("--make-mix", help="write the mix into this folder and exit")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--no-stages", action="store_true")
    a = ap.parse_args()
    if a.make_mix:
        print(json.dumps(make_mix(Path(a.make_mix), quick=a.quick)[1]))
        raise SystemExit(0)
    cfg = dict(QUICK if a.quick else FULL)
    if a.repeats:
        cfg["repeats"] = a.repeats
    if a.mix:
        src = Path(a.mix)
        scratch = Path(a.scratch or common.scratch_dir())
        stage_case = None if a.no_stages else ("sample_s0" if a.quick else "tall_134x3mm")
        res = measure(src, scratch, spacing=cfg["spacing"], shape=cfg["shape"], repeats=cfg["repeats"],
                      stage_case=stage_case)
        print(json.dumps({"summary": summarise(res, len(list(src.iterdir()))), "raw": res}, default=str))
    else:
        for r in run(quick=a.quick):
            print(json.dumps(r, default=str))
