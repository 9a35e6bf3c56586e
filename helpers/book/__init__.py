"""What only the book needs, kept apart from the science in ``helpers``.

* :mod:`helpers.book.notebook` -- the chapters' set-up (``setup()``: plotly renderer,
  matplotlib defaults, warning format) and display helpers (widgets with a still
  image, the header table, scratch folders, the data citation).
* :mod:`helpers.book.checks` -- the exercise checkers (``check_*`` return a
  :class:`~helpers.book.checks.Feedback`).
* :mod:`helpers.book.notebooks` -- the student notebooks made from the chapters
  (``python -m helpers.book.notebooks build``) and the JupyterLab settings.
* :mod:`helpers.book.pdfbook` -- the book printed to one PDF
  (``python -m helpers.book.pdfbook``).

Nothing in the science modules imports from here.
"""
