"""Inputs built for tests and benchmarks, importable by both ``tests/`` and ``bench/``.

* :mod:`helpers.testing.factory` -- a small clean DICOM series written to a folder,
  and every broken variant of it the loader must refuse or warn about.
* :mod:`helpers.testing.lung_phantom` -- a synthetic chest with known lungs, airway,
  heart and tumours, to score lung masks against.

Nothing in the science modules imports from here.
"""
