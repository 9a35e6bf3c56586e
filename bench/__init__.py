"""Benchmarks of the project's helpers against peers (SimpleITK, the 2017 code...).

Run ``python -m bench`` (all), ``python -m bench --quick`` (short inputs, no slow
legacy runs) or ``python -m bench --only resample``; the report goes to
``docs/benchmarks.md``.  Each ``bench/bench_<name>.py`` exposes
``run(*, quick=False) -> list[dict]`` built with :func:`bench.common.row`.
"""
