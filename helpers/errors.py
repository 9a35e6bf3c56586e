"""The project's one exception and one warning class.

Messages follow one rule: say what was expected, what was found, which file and
which tag, and what the reader can do about it.
"""

__all__ = ["DicomSeriesError", "SeriesWarning"]


class DicomSeriesError(ValueError):
    """A DICOM source cannot be turned into a volume as asked.

    Subclasses :class:`ValueError` so ``except ValueError`` keeps working.
    The message names the file or folder, the tag involved, what was expected
    and what to do next.
    """


class SeriesWarning(UserWarning):
    """Something in a series was odd but recoverable (a gap, a dropped localizer...).

    The same text is kept in ``Volume.meta["warnings"]`` so it is not lost when
    warnings are filtered.
    """
