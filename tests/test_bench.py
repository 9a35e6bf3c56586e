"""Tests for the benchmark tools in bench/common.py (the tools, never timing thresholds)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import common
from bench.__main__ import discover
from helpers.export import atomic_write


class TestAlternate:
    def test_every_implementation_is_timed_repeats_times_after_warmup(self):
        calls = []
        impls = {name: (lambda n=name: calls.append(n)) for name in "abc"}
        times = common.alternate(impls, repeats=3, warmup=1)
        assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
        assert calls[:3] == ["a", "b", "c"]  # warm-up
        assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotating order


class TestPeakMemory:
    def test_fresh_process_measures_a_known_allocation(self):
        out = common.measure_in_subprocess("bench.common:calibration_call", 60.0)
        assert 55.0 <= out["peak_mb"] <= 75.0, out
        assert out["time_s"] > 0 and out["method"]

    def test_in_process(self):
        """peak_rss inside one process.  Run in a fresh interpreter: in the test session the
        allocator may hand back 40 MB freed by an earlier test, and the peak then reads 0."""
        code = ("import numpy as np; from bench import common; "
                "print(common.peak_rss(lambda: np.ones(int(40e6 / 8)).sum())[1])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        assert 35.0 <= float(out.stdout.split()[-1]) <= 60.0, out


class TestReport:
    def test_rows_round_trip_through_the_markdown(self, tmp_path):
        rows = [common.row(step="s", implementation="ours | fast", data="d", times=[1.0, 3.0, 2.0],
                           ratio=0.5, ratio_vs="peer", peak_mb=12.3, notes="n", module="bench_x")]
        facts = {"cpu": "test cpu", "cores": 2, "versions": {"numpy": np.__version__}, "memory_check": 100.2}
        text = common.render_markdown(rows, facts, "python -m bench", {"bench_x": {"date_utc": "now"}})
        assert "| s | ours \\| fast | d | 2.000 | 0.50x vs peer | 12 | n; median of 3 |" in text
        assert "measured 100.2 MB" in text and "`python -m bench`" in text
        path = tmp_path / "b.md"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        back = common.read_previous(path)
        assert back["rows"][0]["median_s"] == 2.0 and back["runs"] == {"bench_x": {"date_utc": "now"}}
        assert list(tmp_path.iterdir()) == [path]  # no temporary left behind

    def test_discovers_the_benchmark_modules(self):
        assert "bench_resample" in discover()

    def test_chapter_memory_table(self):
        """bench_chapters rows become one before/after line per chapter (MB)."""
        from bench import bench_chapters

        rows = [common.row(step="chapter 03 kernel peak RSS", implementation="k", data="sample", peak_mb=900.4,
                           module="bench_chapters", chapter="03", dataset="sample"),
                common.row(step="chapter 03 kernel peak RSS", implementation="k", data="real", peak_mb=700.0,
                           module="bench_chapters", chapter="03", dataset="real")]
        text = common.render_markdown(rows, {"versions": {}}, "python -m bench --only chapters")
        before = bench_chapters.BEFORE
        assert f"| 03 | {before['sample']['03']:.0f} | 900 | {before['real']['03']:.0f} | 700 |" in text

    def test_cohort_before_after_table(self):
        """bench_cohort rows become before -> after lines per run and per stage of the tall case."""
        from bench import bench_cohort

        notes = ("20.0 cases/min; 4.5 CPU-s per case (so about 27 cases/min if the run had 2 idle cores to itself); "
                 "wall times [15.0, 15.0] s at load averages [1.0, 2.0]")
        rows = [common.row(step="preprocess a cohort (load+HU, resample, segment, crop, Zarr write)",
                           implementation="Dask LocalCluster, 2 workers: run_cohort(workers=2) x 1 thread",
                           data="5 cases", median_s=15.0, peak_mb=999.6, notes=notes, module="bench_cohort"),
                common.row(step="one case, stage by stage (seconds / peak RSS during the stage)",
                           implementation="helpers.cohort.stage_profile", data="tall", median_s=6.0,
                           notes="load 0.10 s (0.10 CPU-s) / 172 MB; segment 5.00 s (4.80 CPU-s) / 900 MB",
                           module="bench_cohort")]
        text = common.render_markdown(rows, {"versions": {}}, "python -m bench --only cohort")
        b = bench_cohort.BEFORE
        assert (f"| Dask, 2 workers | {b['dask2'][0]} -> 15.0 | {b['dask2'][1]} -> 20.0 | {b['dask2'][2]} -> 4.5 "
                f"| {120 / b['dask2'][2]:.0f} -> 27 | {b['dask2'][3]} -> 1000 | {b['dask2'][4]} -> 1.0, 2.0 |") in text
        assert f"| segment | {b['stages']['segment']:.2f} | 4.80 |" in text
        assert f"| write | {b['stages']['write']:.2f} |  |" in text
