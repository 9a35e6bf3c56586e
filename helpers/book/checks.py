"""Exercise checkers: a resident's answer in, a clear verdict out.

Every checker returns a :class:`Feedback` that shows as one short message in a
notebook: **Right** (and why it matters), **Not yet** (what is wrong, with the
numbers) plus a hint, or **Not answered yet** while the cell still holds ``...``.
A checker never raises on a wrong answer, so the book builds with the exercise
cells left blank.

Chapter authors: add a checker per exercise at the end of this file, built on
:func:`check_number`, :func:`check_array` or :func:`check_choice`, with a doctest
and a test in ``tests/test_checks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from os import PathLike
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..hu import LAA_HU, MAX_BOUND_HU, MIN_BOUND_HU
from ..volume import as_array

if TYPE_CHECKING:
    import pandas as pd
    import pydicom

    from ..annotations import TumourBoxes
    from ..volume import Volume

__all__ = [
    "Feedback",
    "check_number",
    "check_array",
    "check_choice",
    "check_rescale",
    "check_slice_spacing",
    "check_sorted_positions",
    "check_file_order",
    "check_hu",
    "check_window",
    "check_unit_range",
    "check_resampled_shape",
    "check_memory_mb",
    "check_batch_memory_mb",
    "check_mask_order",
    "check_volume_ml",
    "check_dice",
    "check_query_keys",
    "check_pseudonym",
    "check_annotated_slices",
    "check_axial_diameter",
]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer.

    Attributes
    ----------
    ok : bool or None
        True right, False wrong, None not answered yet.
    message : str
        What is right or what is wrong.
    hint : str
        A nudge shown with a wrong or missing answer.
    """

    ok: bool | None
    message: str
    hint: str = ""

    @property
    def label(self) -> str:
        return {True: "Right", False: "Not yet", None: "Not answered yet"}[self.ok]

    def __bool__(self) -> bool:
        return bool(self.ok)

    def __repr__(self) -> str:
        text = f"{'✔' if self.ok else '✘' if self.ok is False else '…'} {self.label}: {self.message}"
        if self.hint and not self.ok:
            text += f"\n  Hint: {self.hint}"
        return text

    def _repr_html_(self) -> str:
        colour = {True: "#1a7f37", False: "#b35900", None: "#57606a"}[self.ok]
        hint = f"<br><em>Hint:</em> {escape(self.hint)}" if self.hint and not self.ok else ""
        return (
            f'<div class="exercise-feedback" style="border-left:4px solid {colour};padding:0.3em 0.8em">'
            f"<strong style=\"color:{colour}\">{self.label}:</strong> {escape(self.message)}{hint}</div>"
        )


def _unanswered(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _missing(hint: str) -> Feedback:
    return Feedback(None, "replace the ... with your answer and run the cell again.", hint)


def check_number(answer: Any, expected: float, *, rtol: float = 0.02, atol: float = 0.0,
                 unit: str = "", hint: str = "", why: str = "",
                 mistakes: Sequence[tuple[float, str]] = ()) -> Feedback:
    """Check a number against the expected value within a tolerance.

    Parameters
    ----------
    answer : float or ...
        The resident's value (``...`` or ``None`` = not answered).
    expected : float
        The right value.
    rtol, atol : float
        Accepted relative and absolute error (``|a - e| <= atol + rtol * |e|``).
    unit : str
        Unit shown in the message.
    hint, why : str
        Hint for a wrong answer; sentence added to a right one.
    mistakes : sequence of (float, str)
        Known wrong answers and why each is wrong: an answer within the
        tolerance of one (and not of ``expected``) gets that reason in the message.

    Returns
    -------
    Feedback

    Examples
    --------
    >>> check_number(2.5, 2.5, unit="mm")
    ✔ Right: 2.5 mm.
    >>> check_number(3.0, 2.5, unit="mm", mistakes=[(3.0, "That is the thickness.")]).message
    'you have 3 mm; the expected value is 2.5 mm. That is the thickness.'
    >>> check_number(3, 2.5, unit="mm", hint="Use the positions.").ok
    False
    >>> check_number(..., 2.5).ok is None
    True
    """
    if _unanswered(answer):
        return _missing(hint)
    try:
        value = float(np.asarray(answer).item())
    except (TypeError, ValueError):
        return Feedback(False, f"expected one number, got {type(answer).__name__} {answer!r:.60}.", hint)
    u = f" {unit}" if unit else ""
    if abs(value - expected) <= atol + rtol * abs(expected):
        return Feedback(True, f"{value:.4g}{u}." + (f" {why}" if why else ""))
    reason = next((r for v, r in mistakes if abs(value - v) <= atol + rtol * abs(v)), "")
    return Feedback(False, f"you have {value:.4g}{u}; the expected value is {expected:.4g}{u}."
                    + (f" {reason}" if reason else ""), hint)


def check_array(answer: Any, expected: ArrayLike, *, atol: float = 1e-3, name: str = "the array",
                hint: str = "", why: str = "", mistakes: Sequence[tuple[ArrayLike, str]] = ()) -> Feedback:
    """Check an array: shape first, then values within ``atol``.

    Parameters
    ----------
    answer : array_like or ...
    expected : array_like
    atol : float
        Largest accepted absolute difference per element.
    name : str
        What the array is, for the message.
    hint, why : str
    mistakes : sequence of (array_like, str)
        Known wrong answers and why each is wrong (matched within ``atol``).

    Returns
    -------
    Feedback

    Examples
    --------
    >>> check_array([1, 2], [1, 2]).ok
    True
    >>> print(check_array([1, 2, 3], [1, 2], name="z"))
    ✘ Not yet: z has shape (3,); expected (2,).
    """
    if _unanswered(answer):
        return _missing(hint)
    a = np.asarray(answer)
    e = np.asarray(expected)
    if a.shape != e.shape:
        return Feedback(False, f"{name} has shape {a.shape}; expected {e.shape}.", hint)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        return Feedback(False, f"{name} should hold numbers; it has dtype {a.dtype}.", hint)
    diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
    bad = int(np.count_nonzero(diff > atol))
    if bad == 0:
        return Feedback(True, f"{name}: all {e.size} values match." + (f" {why}" if why else ""))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    where = (f"{bad} of {e.size} values of {name} differ; the worst at index {tuple(int(i) for i in worst)}: "
             f"{a[worst]:.5g} instead of {e[worst]:.5g}.")
    reason = next((r for m, r in mistakes if _same_array(a, m, atol)), "")
    if reason:  # the reason first: it is what the resident needs to read
        return Feedback(False, f"{reason} ({where[:-1]})", hint)
    return Feedback(False, where, hint)


def _same_array(a: np.ndarray, other: ArrayLike, atol: float) -> bool:
    """True when ``a`` equals ``other`` (same shape) within ``atol``."""
    o = np.asarray(other, dtype=np.float64)
    return o.shape == a.shape and bool(np.all(np.abs(a.astype(np.float64) - o) <= atol))


def check_choice(answer: Any, expected: str | int, *, options: Sequence[str | int] | None = None, hint: str = "",
                 why: str = "", reasons: Mapping[Any, str] | None = None) -> Feedback:
    """Check a choice (a string or an integer) among options.

    ``reasons`` maps a wrong option to why it is wrong; that sentence replaces the
    bare "not the best choice".

    Examples
    --------
    >>> check_choice("nearest", "nearest", options=["linear", "nearest"]).ok
    True
    >>> check_choice("cubic", "nearest", options=["linear", "nearest"]).message
    "'cubic' is not one of ['linear', 'nearest']."
    """
    if _unanswered(answer):
        return _missing(hint)
    norm = (lambda v: v.strip().lower()) if isinstance(answer, str) else (lambda v: v)
    if options is not None and norm(answer) not in [norm(o) if isinstance(o, str) else o for o in options]:
        return Feedback(False, f"{answer!r} is not one of {list(options)}.", hint)
    if norm(answer) == (norm(expected) if isinstance(expected, str) else expected):
        return Feedback(True, f"{answer!r}." + (f" {why}" if why else ""))
    for option, reason in (reasons or {}).items():
        if norm(answer) == (norm(option) if isinstance(option, str) else option):
            return Feedback(False, f"{answer!r}: {reason}", hint)
    return Feedback(False, f"{answer!r} is not the best choice here.", hint)


# ------------------------------------------------------------------ chapter 1: load
def check_rescale(answer: Any, dataset: pydicom.Dataset) -> Feedback:
    """Exercise 1: the ``(slope, intercept)`` of one file.

    Parameters
    ----------
    answer : tuple of 2 float or ...
    dataset : pydicom.Dataset
        The file the resident read.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.RescaleSlope = 1; ds.RescaleIntercept = -1024
    >>> check_rescale((1, -1024), ds).ok
    True
    >>> check_rescale((-1024, 1), ds).message.startswith("You have them the other way round")
    True
    """
    hint = ("Both values are in the header of this one file, under the tag names the exercise gives; "
            "the header table above lists them too.")
    expected = (float(dataset.RescaleSlope), float(dataset.RescaleIntercept))
    return check_array(answer, expected, atol=1e-6, name="(slope, intercept)", hint=hint,
                       why="HU = stored value × slope + intercept, for this file.",
                       mistakes=[(expected[::-1], "You have them the other way round: slope first, then intercept.")])


def check_slice_spacing(answer: Any, volume: Volume, *, thickness: float | None = None) -> Feedback:
    """Exercise 1: the distance between neighbouring slices, in mm, from the positions.

    Parameters
    ----------
    answer : float or ...
    volume : Volume
        The loaded series (its ``slice_positions``).
    thickness : float, optional
        (0018,0050) Slice Thickness in mm; default ``volume.meta["slice_thickness"]``.
        An answer equal to it, where it differs from the step, is rejected with that reason.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 2, 2)), spacing=(2.5, 0.7, 0.7))
    >>> check_slice_spacing(2.5, v).ok
    True
    >>> "Slice Thickness" in check_slice_spacing(3.0, v, thickness=3.0).message
    True
    """
    steps = np.diff(np.sort(np.asarray(volume.slice_positions)))
    expected = float(np.median(steps))
    if thickness is None:
        thickness = (getattr(volume, "meta", None) or {}).get("slice_thickness")
    mistakes = [(-expected, "The sign says the positions were taken head to feet: sort them (ascending) "
                            "before taking differences; a distance is positive.")]
    if thickness is not None and abs(float(thickness) - expected) > 0.01 * expected:
        mistakes.insert(0, (float(thickness), f"That is (0018,0050) Slice Thickness ({float(thickness):g} mm): how "
                                              "thick each reconstructed slice is. Here the slices overlap, so the "
                                              "thickness is not the distance between them."))
    sy, sx = (float(v) for v in volume.spacing[1:])
    mistakes.append((sy, "That is the in-plane (0028,0030) Pixel Spacing, the size of a pixel within a slice."))
    return check_number(
        answer, expected, rtol=0.01, unit="mm", mistakes=mistakes,
        hint="Where each slice lies is in its header, in mm along the patient's long axis; the step is how "
             "far apart neighbours lie once the slices are in order.",
        why="The spacing comes from the positions; Slice Thickness can differ from it.",
    )


def check_sorted_positions(answer: Any, volume: Volume) -> Feedback:
    """Exercise 1: slice positions sorted feet to head (ascending).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 2, 2)), spacing=(2.0, 1, 1))
    >>> check_sorted_positions([0, 2, 4], v).ok
    True
    >>> check_sorted_positions([4, 2, 0], v).ok
    False
    """
    expected = np.sort(np.asarray(volume.slice_positions))
    return check_array(
        answer, expected, atol=1e-3, name="the positions",
        hint="Use the z coordinate of (0020,0032) Image Position (Patient) and sort it ascending (np.sort).",
        why="Position, not Instance Number or file name, gives the anatomical order.",
    )


def check_file_order(answer: Any, folder: str | PathLike[str], *, series_uid: str) -> Feedback:
    """Exercise 1: the file names of one series in a mixed folder, in anatomical order (feet to head).

    Parameters
    ----------
    answer : list of str or Path, or ...
        File names (or paths) of the files of ``series_uid``, ascending position.
    folder : path
        The folder the resident looked at (read only, headers only).
    series_uid : str
        (0020,000E) Series Instance UID of the series asked for.

    Notes
    -----
    The wrong orders residents meet are named: file-name (text) order, Instance
    Number order, head to feet, files of the other series mixed in, and
    positions given instead of file names.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pydicom import Dataset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = pathlib.Path(tmp)
    ...     for name, z, n in [("IM1", 0.0, 3), ("IM2", 5.0, 2), ("IM10", 2.5, 1)]:
    ...         ds = Dataset(); ds.SeriesInstanceUID = "1.2"; ds.InstanceNumber = n
    ...         ds.ImagePositionPatient = [0, 0, z]; ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ...         ds.save_as(d / name, implicit_vr=True, little_endian=True)
    ...     right = check_file_order(["IM1", "IM10", "IM2"], d, series_uid="1.2")
    ...     by_name = check_file_order(["IM1", "IM10", "IM2"][::-1], d, series_uid="1.2")
    >>> right.ok, by_name.ok
    (True, False)
    """
    from pathlib import Path

    hint = ("Read the headers of the files in the folder: one tag says which series a file belongs to, "
            "another where the slice lies. Neither the name nor the number is a position.")
    if _unanswered(answer):
        return _missing(hint)
    rows = _file_headers(folder)
    mine = [r for r in rows if r[1] == series_uid]
    expected = [r[0] for r in sorted(mine, key=lambda r: r[3])]
    items = list(np.atleast_1d(np.asarray(answer, dtype=object)))
    if items and all(isinstance(v, (int, float, np.number)) for v in items):
        return Feedback(False, f"you gave {len(items)} numbers; the exercise asks for the file names, in order. "
                               "Positions that are already sorted (like vol.slice_positions) come from the loader "
                               "and say nothing about which file is which.", hint)
    got = [Path(str(v)).name for v in items]
    numbers = {r[0]: r[2] for r in mine}
    if got == expected:
        other = [what for what, order in (("file name", sorted(expected)),
                                          ("Instance Number", sorted(expected, key=numbers.__getitem__)))
                 if order != expected]
        return Feedback(True, f"{len(got)} files, feet to head."
                        + (f" Sorting by {' or by '.join(other)} would have given another order." if other else ""))
    return _file_order_mistake(got, expected, rows, series_uid=series_uid, hint=hint)


def _file_headers(folder: str | PathLike[str]) -> list[tuple[str, str, int, float]]:
    """(name, Series Instance UID, Instance Number, position along the normal) of each DICOM image."""
    import warnings
    from pathlib import Path

    import pydicom

    rows = []
    for f in sorted(Path(folder).iterdir()):
        try:
            with warnings.catch_warnings():  # a stray non-DICOM file is skipped, not reported
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
            row = (f.name, str(ds.SeriesInstanceUID), int(ds.get("InstanceNumber", 0)))
        except Exception:  # not a DICOM image: not part of any series
            continue
        rows.append((*row, float(ipp @ np.cross(iop[:3], iop[3:]))))
    return rows


def _file_order_mistake(got: list[str], expected: list[str], rows: list, *, series_uid: str,
                        hint: str) -> Feedback:
    """Which usual mistake a wrong file order is: other series, missing files, reversed, by name, by number."""
    numbers = {r[0]: r[2] for r in rows if r[1] == series_uid}
    others = sorted(set(got) - set(expected))
    missing = [n for n in expected if n not in set(got)]
    if others:
        other_names = {r[0] for r in rows if r[1] != series_uid}
        k = len(set(others) & other_names)
        what = f"{k} of them belong to another series" if k else "they are not files of this series"
        return Feedback(False, f"your list has {len(others)} file(s) too many ({others[0]}, …): {what}. "
                               "Two reconstructions share positions and Instance Numbers; only the "
                               "Series Instance UID tells them apart.", hint)
    if missing:
        return Feedback(False, f"{len(missing)} file(s) of the series are missing from your list ({missing[0]}, …).",
                        hint)
    if got == expected[::-1]:
        return Feedback(False, "the right files, but head to feet: anatomical order here means ascending position "
                               "(feet to head), the order load_series gives.", hint)
    if got == sorted(expected):
        return Feedback(False, "the right files in file-name order: text sorts character by character, so IM10 "
                               "comes before IM2. A name is not a position.", hint)
    if got == sorted(expected, key=lambda n: numbers[n]) or got == sorted(expected, key=lambda n: -numbers[n]):
        return Feedback(False, "the right files in (0020,0013) Instance Number order: on this series the numbers "
                               "do not follow the position along the body.", hint)
    wrong = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    return Feedback(False, f"the right files, but not in anatomical order: position {wrong} holds {got[wrong]} "
                           f"instead of {expected[wrong]}.", hint)


# ------------------------------------------------------------- chapter 2: normalize
#: Rescale Intercept (HU) many residents remember as "the" CT intercept.
USUAL_INTERCEPT_HU = -1024.0


def check_hu(answer: Any, stored: ArrayLike, slope: float, intercept: float) -> Feedback:
    """Exercise 2: stored values to HU by hand, in floating point.

    Known mistakes are named in the message: the intercept left out, the usual
    -1024 typed in where this file's intercept differs, the slope left out, and
    16-bit arithmetic that wrapped around.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([0, 1024, 3000], np.uint16)
    >>> check_hu(s * 1.0 - 1024, s, 1, -1024).ok
    True
    >>> check_hu(s - 1024, s, 1, -1024).ok  # uint16 arithmetic wraps around
    False
    >>> "intercept" in check_hu(s * 1.0, s, 1, -1024).message
    True
    """
    st = np.asarray(stored, dtype=np.float64)
    expected = st * slope + intercept
    mistakes = [
        (st * slope, f"You left out the intercept: every value is {-intercept:g} HU too high, so air comes out "
                     "near 0 instead of -1000. The intercept is the offset of the scale."),
    ]
    if abs(intercept - USUAL_INTERCEPT_HU) > 0.5:
        mistakes.append((st * slope + USUAL_INTERCEPT_HU,
                         f"You used {USUAL_INTERCEPT_HU:g}, the intercept of many scanners; this file says "
                         f"{intercept:g}, and in this series it changes from slice to slice. Read it from the file."))
    if abs(slope - 1.0) > 1e-6:
        mistakes.append((st + intercept, f"You left out the slope ({slope:g}): each stored step is {slope:g} HU."))
    if np.asarray(stored).dtype.kind == "u":
        wrapped = (st * slope + intercept) % 65536
        mistakes.append((wrapped, "Values near 65 000: the arithmetic stayed in unsigned "
                                  "16-bit integers, which cannot go below zero and wrap around."))
    return check_array(
        answer, expected, atol=0.5, name="your HU values", mistakes=mistakes,
        hint="The header says how stored values map to HU: both rescale tags of this file count, and the "
             "result must be able to go below zero.",
        why="Air is about -1000 HU, water 0, dense bone above +700.",
    )


def check_window(answer: Any, hu: ArrayLike, level: float, width: float) -> Feedback:
    """Exercise 2: a window/level by hand, mapped to ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-2000.0, -600, 1000])
    >>> check_window(np.array([0.0, 0.5, 1.0]), hu, -600, 1500).ok
    True
    """
    hu = np.asarray(hu, dtype=np.float64)
    lo, hi = level - width / 2, level + width / 2
    expected = np.clip((hu - lo) / (hi - lo), 0, 1)
    wide_lo, wide_hi = level - width, level + width
    mistakes = [
        ((hu - lo) / (hi - lo), "Some values lie outside [0, 1]: everything below the window must be 0 (black) "
                                "and everything above it 1 (white)."),
        (np.clip((hu - wide_lo) / (wide_hi - wide_lo), 0, 1),
         f"Your window spans {width * 2:g} HU: the width is the whole span, so the window reaches half of it "
         "on each side of the level."),
    ]
    return check_array(
        answer, expected, atol=1e-3, name="your windowed image", mistakes=mistakes,
        hint="The level is the centre of the window and the width its whole span; inside it grey rises "
             "evenly from black to white, outside it stays black or white.",
        why="Everything below the window is black, above it white.",
    )


def check_unit_range(answer: Any, hu: ArrayLike, *, low: float = MIN_BOUND_HU, high: float = MAX_BOUND_HU) -> Feedback:
    """Exercise 2: clip to ``[low, high]`` HU and scale to ``[0, 1]`` for a model.

    Examples
    --------
    >>> import numpy as np
    >>> check_unit_range(np.array([0.0, 1.0]), np.array([-1200.0, 500])).ok
    True
    """
    hu = np.asarray(hu, dtype=np.float64)
    expected = (np.clip(hu, low, high) - low) / (high - low)
    span = float(hu.max() - hu.min()) or 1.0
    mistakes = [
        ((hu - low) / (high - low), f"Some values lie outside [0, 1]: clip to {low:g}…{high:g} HU first."),
        ((hu - hu.min()) / span, "You scaled by this slice's own minimum and maximum: another scan would get "
                                 "another scale. A model needs the same fixed HU range for every scan."),
    ]
    return check_array(
        answer, expected, atol=1e-3, name="your scaled array", mistakes=mistakes,
        hint=f"First keep only the range {low:g}…{high:g} HU (anything outside takes the nearest end), "
             "then stretch that fixed range onto 0…1.",
        why="The same fixed range for every scan keeps the model's inputs comparable.",
    )


# -------------------------------------------------------------- chapter 3: resample
def check_resampled_shape(answer: Any, volume: Volume,
                          spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Feedback:
    """Exercise 3: the array shape after resampling to ``spacing`` (extent / spacing, rounded).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((10, 100, 100)), spacing=(2.5, 0.7, 0.7))
    >>> check_resampled_shape((25, 70, 70), v).ok
    True
    """
    expected = tuple(int(round(n * s / t)) for n, s, t in zip(volume.shape, volume.spacing, spacing))
    if _unanswered(answer):
        return _missing("")
    try:
        got = tuple(int(a) for a in answer)
    except TypeError:
        return Feedback(False, f"expected a tuple of 3 integers (z, y, x), got {answer!r}.", "")
    hint = ("The scan keeps its size in millimetres; ask how many voxels of the new size fit along each "
            "axis, one axis at a time.")
    if len(got) == 3 and all(abs(g - e) <= 1 for g, e in zip(got, expected)):
        return Feedback(True, f"{got} (z, y, x). Rounding can differ by one voxel between libraries.")
    def near(shape: Sequence[int]) -> bool:
        return len(got) == 3 and all(abs(g - e) <= 1 for g, e in zip(got, shape))

    reason = ""
    if near(tuple(int(n) for n in volume.shape)):
        reason = " That is the shape before resampling: the voxels change size, so their number changes too."
    elif near(expected[::-1]):
        reason = " The axes are reversed: arrays here are (z, y, x), slices first."
    elif near(tuple(int(round(n * t / s)) for n, s, t in zip(volume.shape, volume.spacing, spacing))):
        reason = " You divided where you should multiply: smaller voxels mean more of them, larger voxels fewer."
    return Feedback(False, f"you have {got}; expected about {expected} (z, y, x).{reason}", hint)


#: Accepted relative error of a memory answer: below the 4.9 % between MB and MiB.
MEMORY_RTOL = 0.01


def _memory_mistakes(shape: Sequence[int], dtype: DTypeLike) -> list:
    """Known wrong memory answers (MB) for an array of ``shape`` and ``dtype``, with the reason."""
    n = float(np.prod(shape))
    size = np.dtype(dtype).itemsize
    expected = n * size / 1e6
    return [
        (n * size / 2 ** 20, "That is MiB (2^20 = 1 048 576 bytes), the unit many tools print; "
                             "1 MB is 10^6 bytes, about 5 % less."),
        (n / 1e6, f"That counts voxels, not bytes: each {np.dtype(dtype).name} voxel takes {size} bytes."),
        (expected * 8, "That is in megabits: 1 byte is 8 bits."),
        (n * size / 1e9, "That is in GB (10^9 bytes); the question asks for MB."),
    ]


def check_memory_mb(answer: Any, shape: Sequence[int], dtype: DTypeLike = "float32") -> Feedback:
    """Exercise 3: memory of an array in MB (10^6 bytes): voxels × bytes per voxel.

    MiB (2^20 bytes), a voxel count and megabits are rejected, each with the reason.

    Examples
    --------
    >>> check_memory_mb(4.0, (10, 100, 1000), "float32").ok
    True
    >>> "MiB" in check_memory_mb(4e6 / 2 ** 20, (10, 100, 1000), "float32").message
    True
    """
    expected = float(np.prod(shape)) * np.dtype(dtype).itemsize / 1e6
    return check_number(
        answer, expected, rtol=MEMORY_RTOL, unit="MB", mistakes=_memory_mistakes(shape, dtype),
        hint=f"Every voxel of a {np.dtype(dtype).name} array takes the same number of bytes; count the voxels "
             "from the shape, then convert bytes to MB (10^6 bytes, not 2^20).",
        why="Check this before resampling a whole scan on a laptop.",
    )


def check_batch_memory_mb(answer: Any, batch_shape: Sequence[int], dtype: DTypeLike = "float32") -> Feedback:
    """Exercise 8: memory of a training batch in MB; ``batch_shape`` is (cases, z, y, x).

    Besides the mistakes of :func:`check_memory_mb`, one case instead of the whole
    batch is rejected with the reason.

    Examples
    --------
    >>> check_batch_memory_mb(8 * 4.0, (8, 10, 100, 1000)).ok
    True
    >>> "one case" in check_batch_memory_mb(4.0, (8, 10, 100, 1000)).message
    True
    """
    shape = tuple(int(n) for n in batch_shape)
    expected = float(np.prod(shape)) * np.dtype(dtype).itemsize / 1e6
    one = expected / shape[0]
    mistakes = [(one, f"That is one case; the batch holds {shape[0]} of them at once.")]
    mistakes += _memory_mistakes(shape, dtype)
    return check_number(
        answer, expected, rtol=MEMORY_RTOL, unit="MB", mistakes=mistakes,
        hint="A batch is one array with the cases as its first axis; its size in bytes follows from all "
             "four numbers of the shape and the bytes per value.",
        why="The GPU holds this batch, the model's weights and every layer's activations at once: the "
            "activations are usually many times the input, so batch size is the first knob when memory runs out.",
    )


def check_mask_order(answer: Any) -> Feedback:
    """Exercise 3: interpolation order for a label mask (0, nearest).

    Examples
    --------
    >>> check_mask_order(0).ok
    True
    >>> check_mask_order(1).ok
    False
    """
    hint = "Think of a voxel at the tumour's edge, halfway between a 1 and a 0: what value should it get?"
    if isinstance(answer, str):
        answer = {"nearest": 0, "linear": 1, "cubic": 3}.get(answer.strip().lower(), answer)
    reasons = {1: "linear interpolation blends neighbours, so the edge gets values like 0.5 that are no label "
                  "(and between labels 1 and 2 it invents 1.5).",
               3: "cubic interpolation blends even more neighbours and overshoots: values below 0 and above 1 "
                  "appear around the edge."}
    return check_choice(answer, 0, options=[0, 1, 3], hint=hint, reasons=reasons,
                        why="Nearest neighbour keeps labels as they are (no 0.5 voxels).")


# ---------------------------------------------------------- chapter 7: segmentation
def check_volume_ml(answer: Any, mask: ArrayLike, spacing: Sequence[float]) -> Feedback:
    """Exercise 7: volume of a mask in mL: voxel count × voxel volume (mm³) / 1000.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((10, 10, 10), bool)
    >>> check_volume_ml(2.0, m, (2.0, 1.0, 1.0)).ok
    True
    """
    n = float(np.count_nonzero(mask))
    sz, sy, sx = (float(v) for v in spacing)
    expected = n * sz * sy * sx / 1000.0
    mistakes = [
        (n * sz * sy * sx, "That is in mm³: 1 mL is 1000 mm³."),
        (n / 1000.0, "That counts voxels as if each were 1 mm³; these voxels are not."),
        (n, "That is the number of voxels, not a volume."),
        (n * sy * sx / 1000.0, "Only the pixel area counted: a voxel also has a depth, the slice spacing."),
    ]
    return check_number(
        answer, expected, rtol=0.01, unit="mL", mistakes=mistakes,
        hint="A mask's volume is how many voxels it has times the volume of one voxel, from its three sizes "
             "in mm; then mm³ to mL.",
        why="A healthy adult's lungs hold several litres at full inspiration.",
    )


def check_dice(answer: Any, a: ArrayLike, b: ArrayLike) -> Feedback:
    """Exercise 7: Dice = 2 |A ∩ B| / (|A| + |B|).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([1, 1, 0, 0], bool); b = np.array([1, 0, 1, 0], bool)
    >>> check_dice(0.5, a, b).ok
    True
    """
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    denom = a.sum() + b.sum()
    both = float(np.logical_and(a, b).sum())
    expected = 1.0 if denom == 0 else 2.0 * both / denom
    mistakes = []
    union = float(np.logical_or(a, b).sum())
    if union and abs(both / union - expected) > 1e-3:
        mistakes.append((both / union, "That is the Jaccard index (overlap / union); Dice counts the overlap "
                                       "twice over the two sizes added, and is always the larger of the two."))
    if denom and abs(both / denom - expected) > 1e-3:
        mistakes.append((both / denom, "Half of Dice: the overlap counts once for each mask."))
    return check_number(
        answer, float(expected), atol=1e-3, rtol=0, mistakes=mistakes,
        hint="Dice compares the voxels both masks share with the sizes of the two masks.",
        why="1 is perfect overlap, 0 none; a Dice of 0.95 can still hide a missed tumour.",
    )


# ------------------------------------------------- chapter 4: histograms (added by the display/mesh engineer)
#: Accepted relative error of a percentage answer (small percentages need a relative tolerance).
PERCENT_RTOL = 0.01


def _percent_below(hu: ArrayLike, mask: ArrayLike, threshold_hu: float) -> float:
    inside = np.asarray(mask)
    n = np.count_nonzero(inside)
    return 100.0 * np.count_nonzero(np.asarray(hu)[inside] < threshold_hu) / max(int(n), 1)


def check_laa_percent(answer: Any, volume: Volume | ArrayLike, lung_mask: ArrayLike, *,
                      threshold_hu: float = LAA_HU) -> Feedback:
    """Exercise 4: % of lung voxels below -950 HU (low-attenuation area, LAA-950).

    The tolerance is relative (1 %), so a one-lung answer is rejected even when
    LAA is a fraction of a percent; one lung, a fraction instead of a percentage,
    and the whole scan instead of the lungs are named in the message.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-1000, -900, -960, 40]); lungs = np.array([1, 1, 2, 0])
    >>> check_laa_percent(200 / 3, hu, lungs).ok
    True
    >>> "right lung only" in check_laa_percent(50, hu, lungs).message
    True
    """
    hu = as_array(volume, name="volume")
    labels = np.asarray(lung_mask)
    expected = _percent_below(hu, labels > 0, threshold_hu)
    mistakes = [(_percent_below(hu, labels == 1, threshold_hu),
                 "That is the right lung only (label 1); LAA here is over both lungs together."),
                (_percent_below(hu, labels == 2, threshold_hu),
                 "That is the left lung only (label 2); LAA here is over both lungs together."),
                (expected / 100.0, "That is a fraction; the question asks for a percentage."),
                (_percent_below(hu, np.ones(hu.shape, bool), threshold_hu),
                 "That counts every voxel of the scan, the air around the patient included; count lung voxels only.")]
    mistakes = [(v, r) for v, r in mistakes if abs(v - expected) > PERCENT_RTOL * abs(expected)]
    return check_number(
        answer, expected, rtol=PERCENT_RTOL, atol=1e-9, unit="%", mistakes=mistakes,
        hint="LAA is a share of the lung: of all voxels inside the lung mask (both labels), how many lie "
             "below the threshold?",
        why="Below 5-6 % is usual in healthy lungs on thin soft-kernel slices; the number moves with "
            "kernel, slice thickness and inspiration, so compare like with like.",
    )


def check_band_percent(answer: Any, volume: Volume | ArrayLike, mask: ArrayLike,
                       band: tuple[float, float] = (-190.0, -30.0)) -> Feedback:
    """Exercise 4: % of the masked voxels whose HU lies in ``band`` (inclusive).

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-100, -50, 40, 60]); body = np.array([1, 1, 1, 1], bool)
    >>> check_band_percent(50, hu, body).ok
    True
    """
    hu = as_array(volume, name="volume")
    m = np.asarray(mask).astype(bool)
    lo, hi = band

    def share(values: np.ndarray) -> float:
        return 100.0 * np.count_nonzero((values >= lo) & (values <= hi)) / max(values.size, 1)

    expected = share(hu[m])
    mistakes = [(expected / 100.0, "That is a fraction; the question asks for a percentage."),
                (share(hu.ravel()), "That is a share of the whole scan, air outside the body included; "
                                    "count only the voxels inside the mask.")]
    mistakes = [(v, r) for v, r in mistakes if abs(v - expected) > PERCENT_RTOL * abs(expected)]
    return check_number(
        answer, expected, rtol=PERCENT_RTOL, atol=1e-9, unit="%", mistakes=mistakes,
        hint="A share of the masked voxels: of the voxels inside the mask, how many lie in the band (both ends "
             "included)?",
        why="Fat is easy to measure on CT because its band barely overlaps any other tissue.",
    )


# ------------------------------------------------------ chapter 5: montage and views
def check_aspect(answer: Any, volume: Volume, plane: str = "coronal") -> Feedback:
    """Exercise 5: ``aspect`` for ``imshow`` of a reslice = row spacing / column spacing.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 4, 4)), spacing=(2.5, 0.7, 0.7))
    >>> check_aspect(2.5 / 0.7, v).ok
    True
    >>> check_aspect(0.7 / 2.5, v).ok
    False
    """
    sz, sy, sx = volume.spacing
    rows_cols = {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]
    expected = rows_cols[0] / rows_cols[1]
    mistakes = [(1.0 / expected, "That is upside down: imshow's aspect is a pixel's height over its width, "
                                 "so the body would come out squashed instead of stretched (or the reverse)."),
                (1.0, "An aspect of 1 draws every pixel square, but here a pixel is taller than it is wide.")]
    mistakes = [(v, r) for v, r in mistakes if abs(v - expected) > 0.01 * expected]
    return check_number(
        answer, expected, rtol=0.01, mistakes=mistakes,
        hint=f"In a {plane} image, which spacing separates the rows and which the columns? The aspect "
             "compares a pixel's height with its width, in mm.",
        why="With it the body keeps its real proportions.",
    )


def check_slice_at(answer: Any, volume: Volume, position_mm: float) -> Feedback:
    """Exercise 5: index of the slice nearest a position along the slice normal (mm).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((5, 2, 2)), spacing=(2.5, 1, 1), origin=(0, 0, -10))
    >>> check_slice_at(2, v, -5.2).ok
    True
    """
    pos = np.asarray(volume.slice_positions, dtype=np.float64)
    expected = int(np.argmin(np.abs(pos - position_mm)))
    hint = "Each slice has a position in mm; the one you want is the slice whose position is closest to the target."
    why = "Index and position differ: the index depends on where the scan starts and on the slice spacing."
    if _unanswered(answer):
        return _missing(hint)
    try:
        value = float(np.asarray(answer).item())
    except (TypeError, ValueError):
        return Feedback(False, f"expected one slice index (an integer), got {type(answer).__name__}.", hint)
    if value == expected:
        return Feedback(True, f"{expected}: at {pos[expected]:.1f} mm, {abs(pos[expected] - position_mm):.1f} mm "
                              f"from the target. {why}")
    k = int(round(value))
    if value == k and 0 <= k < len(pos):
        d_yours, d_best = abs(pos[k] - position_mm), abs(pos[expected] - position_mm)
        why_off = (" One slice off: rounding down instead of to the nearest, or counting from 1, does that."
                   if abs(k - expected) == 1 else "")
        return Feedback(False, f"slice {k} lies at {pos[k]:.1f} mm, {d_yours:.1f} mm from the target "
                               f"{position_mm:.1f} mm; another slice lies only {d_best:.1f} mm from it.{why_off}",
                        hint)
    if abs(value - position_mm) < 1e-6 or not 0 <= value < len(pos):
        return Feedback(False, f"{value:g} is not a slice index: the scan has slices 0 to {len(pos) - 1}. "
                               "A position in mm is not an index.", hint)
    return Feedback(False, f"{value:g} is not a whole slice index.", hint)


# ------------------------------------------------------------- chapter 6: meshes
def check_mesh_budget(answer: Any, max_triangles: int, *, level: float | None = None) -> Feedback:
    """Exercise 6: a :class:`helpers.mesh.Mesh` within a triangle budget (and at a level).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.mesh import Mesh
    >>> m = Mesh(np.eye(3), [[0, 1, 2]], {"level": 300.0})
    >>> check_mesh_budget(m, 10, level=300).ok
    True
    >>> check_mesh_budget(m, 0).ok
    False
    """
    if _unanswered(answer):
        return _missing("surface_mesh has an option for the HU level and one for a triangle budget.")
    n = getattr(answer, "n_triangles", None)
    if n is None:
        return Feedback(False, f"expected a Mesh from surface_mesh, got {type(answer).__name__}.",
                        "surface_mesh returns a Mesh; keep the returned object.")
    if level is not None and abs(float(answer.meta.get("level", np.nan)) - level) > 1e-6:
        return Feedback(False, f"this mesh was made at level {answer.meta.get('level')}; the exercise asks {level:g}.",
                        "Pass level= to surface_mesh.")
    if n > max_triangles:
        return Feedback(False, f"{n:,} triangles is above the budget of {max_triangles:,}.",
                        "Pass max_triangles= to surface_mesh.")
    if n == 0:
        return Feedback(False, "the mesh is empty.", "Check the level: is it inside the data range?")
    return Feedback(True, f"{n:,} triangles, within {max_triangles:,}. At ~25 bytes per triangle that is "
                          f"about {n * 25 / 1e6:.1f} MB of web page.")


# ------------------------------------------------------------- chapter 8: cohort
def check_failed_cases(answer: Any, qc: pd.DataFrame) -> Feedback:
    """Exercise 8: the case id(s) the QC table marks as failed (a string or a list of strings).

    Parameters
    ----------
    answer : str, list of str or ...
        Case id(s).
    qc : pandas.DataFrame
        The QC table of :func:`helpers.cohort.run_cohort` (columns ``case_id``, ``status``).

    Examples
    --------
    >>> import pandas as pd
    >>> qc = pd.DataFrame({"case_id": ["a", "b"], "status": ["done", "failed"]})
    >>> check_failed_cases("b", qc).ok, check_failed_cases(["a"], qc).ok
    (True, False)
    """
    if _unanswered(answer):
        return _missing("The QC table has one row per case and a column that says how each case ended.")
    got = {answer} if isinstance(answer, str) else {str(a) for a in np.atleast_1d(np.asarray(answer, dtype=object))}
    expected = set(qc.loc[qc["status"] == "failed", "case_id"].astype(str))
    if got == expected:
        return Feedback(True, f"{', '.join(sorted(expected)) or 'none'}. The run went on without "
                              "them; the error column says what to fix, and the next run tries them again.")
    return Feedback(False, f"you have {sorted(got)}; the failed case(s): {len(expected)}.",
                    "The status column is 'done', 'skipped' or 'failed'.")


#: Voxel budget of the chapter 8 crop exercise.
CROP_BUDGET_VOXELS = 300_000
#: Share of lung voxels (%) a crop may cut off and still count as keeping the lungs.
CROP_MAX_OUTSIDE_PCT = 0.5


def check_crop_keeps_lungs(answer: Any, *, budget: int = CROP_BUDGET_VOXELS,
                           max_outside_pct: float = CROP_MAX_OUTSIDE_PCT) -> Feedback:
    """Exercise 8: a :class:`helpers.cohort.CaseResult` whose crop keeps the lungs within a voxel budget.

    Parameters
    ----------
    answer : CaseResult or ...
        From ``preprocess_case(..., mode="crop")``.
    budget : int, default 300000
        Largest accepted number of voxels of the cropped array.
    max_outside_pct : float, default 0.5
        Largest accepted share (%) of lung voxels outside the crop.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.cohort import CaseResult
    >>> from helpers.volume import Volume
    >>> r = CaseResult(Volume(np.zeros((8, 8, 8)), spacing=(4, 4, 4)), np.zeros((8, 8, 8), np.uint8),
    ...                {"lung_outside_pct": 0.0})
    >>> check_crop_keeps_lungs(r).ok
    True
    """
    if _unanswered(answer):
        return _missing("Call preprocess_case(case, spacing=(4, 4, 4), shape=(z, y, x)) with a larger shape.")
    qc = getattr(answer, "qc", None)
    image = getattr(answer, "image", None)
    if qc is None or image is None:
        return Feedback(False, f"expected the result of preprocess_case, got {type(answer).__name__}.",
                        "Keep what preprocess_case returns.")
    n = int(np.prod(image.shape))
    outside = float(qc.get("lung_outside_pct", np.nan))
    if not outside <= max_outside_pct:
        return Feedback(False, f"the crop {tuple(image.shape)} still cuts off {outside:.1f}% of the lung voxels.",
                        "Find the lungs' extent along each axis (in voxels) and choose a shape at least that large.")
    if n > budget:
        return Feedback(False, f"the lungs fit, but {tuple(image.shape)} is {n:,} voxels, above the budget of "
                               f"{budget:,}.", "Shrink the axes where the lungs leave room; each axis is independent.")
    return Feedback(True, f"{tuple(image.shape)}: {n:,} voxels, {outside:.2f}% of the lungs outside. A shape "
                          "fitted to the lungs of the whole cohort keeps every case without wasting memory.")


# ------------------------------------------------------------------ chapter 0: PACS
def check_query_keys(answer: Any, *, patient_id: str, study_date: str, modality: str = "CT") -> Feedback:
    """Exercise 0: the C-FIND / QIDO-RS keys for "this patient's CT studies in that year".

    Parameters
    ----------
    answer : dict or ...
        Keyword -> value, as passed to ``c_find(pacs, "STUDY", **answer)``.
    patient_id : str
        The patient's (0010,0020) Patient ID.
    study_date : str
        The study's (0008,0020) Study Date, ``YYYYMMDD``; the range must cover it.
    modality : str
        The modality to ask for in (0008,0061) Modalities in Study.

    Examples
    --------
    >>> check_query_keys({"PatientID": "P1", "StudyDate": "20170101-20171231", "ModalitiesInStudy": "CT"},
    ...                  patient_id="P1", study_date="20170315").ok
    True
    >>> check_query_keys({"PatientID": "P1", "StudyDate": "2017"}, patient_id="P1", study_date="20170315").ok
    False
    """
    import re

    hint = ("One key names the patient, one the dates and one the kind of scan; at STUDY level a date key "
            "can hold a range of days.")
    if _unanswered(answer):
        return _missing(hint)
    if not isinstance(answer, dict):
        return Feedback(False, f"expected a dict of keyword -> value, got {type(answer).__name__}.", hint)
    if str(answer.get("PatientID", "")) != patient_id:
        return Feedback(False, f"PatientID is {answer.get('PatientID')!r}; the query must name the patient.", hint)
    rng = str(answer.get("StudyDate", ""))
    m = re.fullmatch(r"(\d{8})-(\d{8})", rng)
    if not m:
        return Feedback(False, f"StudyDate {rng!r} is not a range YYYYMMDD-YYYYMMDD.", hint)
    if not (m.group(1) <= study_date <= m.group(2) and m.group(1)[:4] == m.group(2)[:4] == study_date[:4]):
        return Feedback(False, f"the range {rng} does not cover the study's year {study_date[:4]} (only).", hint)
    mod = str(answer.get("ModalitiesInStudy", answer.get("Modality", "")))
    if mod.upper() != modality.upper():
        return Feedback(False, f"ModalitiesInStudy is {mod!r}; ask for {modality} only.",
                        "At STUDY level the key is ModalitiesInStudy; Modality belongs to the SERIES level.")
    return Feedback(True, "the same keys work in C-FIND and as QIDO-RS query parameters.")


def check_pseudonym(answer: Any, mapping: str | PathLike[str]) -> Feedback:
    """Exercise 0: the new Patient ID of the de-identified copy, read from the mapping table.

    Parameters
    ----------
    answer : str or ...
    mapping : path
        The CSV written by :func:`helpers.deid.deidentify`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "m.csv"
    ...     _ = p.write_text("original_PatientID,new_PatientID\\nA1,ZZ9\\n")
    ...     ok = check_pseudonym("ZZ9", p).ok
    >>> ok
    True
    """
    import csv
    from pathlib import Path

    hint = "The mapping table pairs each original Patient ID with the one the copy carries."
    if _unanswered(answer):
        return _missing(hint)
    with Path(mapping).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    new = {row["new_PatientID"] for row in rows}
    old = {row.get("original_PatientID", "") for row in rows}
    if str(answer).strip() in new:
        return Feedback(True, f"{answer!r}. Whoever holds the mapping can undo the de-identification: keep "
                              "it apart from the data, like a key.")
    if str(answer).strip() in old:
        return Feedback(False, f"{answer!r} is the original Patient ID, the one the copy must no longer carry.",
                        hint)
    return Feedback(False, f"{answer!r} is not the new Patient ID.", hint)


# ------------------------------------------------- chapter 7b: the tumour (added by the tumour engineer)
def check_annotated_slices(answer: Any, boxes: TumourBoxes) -> Feedback:
    """Exercise 7b: how many slices a lesion spans, its first and last slice included.

    Parameters
    ----------
    answer : int or ...
        The resident's count.
    boxes : helpers.annotations.TumourBoxes
        The lesion's boxes (their first and last slice index).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> boxes = SimpleNamespace(slice_indices=[97, 98, 112])
    >>> check_annotated_slices(16, boxes).ok, check_annotated_slices(15, boxes).ok
    (True, False)
    """
    ks = list(boxes.slice_indices)
    expected = ks[-1] - ks[0] + 1
    hint = (f"The first annotated slice is {ks[0]} and the last {ks[-1]}; count the slices from one to the other, "
            "both ends included.")
    mistakes = [(float(expected - 1), f"{expected - 1} = {ks[-1]} - {ks[0]} counts the gaps between slices, not "
                                      "the slices: slices 97 through 112 are 16 slices, not 15 (a fencepost error)."),
                (float(len(ks)), f"{len(ks)} counts the boxes; a slice without a box between the first and the last "
                                 "still holds the lesion.")]
    mistakes = [(v, r) for v, r in mistakes if v != expected]
    return check_number(answer, float(expected), rtol=0, atol=0, unit="slices", hint=hint, mistakes=mistakes,
                        why="A box on the first and the last slice means a lesion on every slice in between.")


def check_axial_diameter(answer: Any, endpoints: ArrayLike, spacing: Sequence[float]) -> Feedback:
    """Exercise 7b: the length in mm of a diameter given by its two ``(row, col)`` end points.

    Parameters
    ----------
    answer : float or ...
        The resident's length in mm.
    endpoints : array-like, shape (2, 2)
        ``(row, col)`` of both ends (``TumourRegion.endpoints``).
    spacing : tuple of 3 float
        ``(z, y, x)`` voxel size in mm: rows are ``spacing[1]`` apart, columns ``spacing[2]``.

    Examples
    --------
    >>> check_axial_diameter(5.0, [[0, 0], [3, 4]], (5.0, 1.0, 1.0)).ok
    True
    >>> "in pixels" in check_axial_diameter(5.0, [[0, 0], [3, 4]], (5.0, 0.5, 0.5)).message
    True
    """
    (r0, c0), (r1, c1) = np.asarray(endpoints, dtype=float)
    expected = float(np.hypot((r1 - r0) * spacing[1], (c1 - c0) * spacing[2]))
    pixels = float(np.hypot(r1 - r0, c1 - c0))
    hint = ("Rows and columns are not 1 mm apart: turn each difference into mm first, then measure the "
            "straight line between the two ends.")
    mistakes = [(pixels, f"{pixels:.4g} is in pixels: convert each difference to mm with the pixel spacing first."),
                (abs(r1 - r0) * spacing[1] + abs(c1 - c0) * spacing[2],
                 "You added the two sides; the diameter is the straight line between the ends, the hypotenuse.")]
    mistakes = [(v, r) for v, r in mistakes if abs(v - expected) > 0.01 * expected]
    return check_number(answer, expected, rtol=0.01, unit="mm", hint=hint, mistakes=mistakes,
                        why="RECIST follows a lesion by this longest axial diameter from scan to scan.")
