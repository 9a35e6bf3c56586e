"""Student notebooks generated from the MyST chapters, and the JupyterLab set-up that opens them.

The chapters in ``book/`` (MyST markdown, read with jupytext) stay the one source of truth.
:func:`student_notebook` turns one chapter into a plain Jupyter notebook that any Jupyter
(JupyterLab, Notebook 7, VS Code, Binder) shows as a resident expects:

* directives become plain markdown: an admonition becomes a block quote with its title in bold,
  an ``{exercise}`` a ``### Exercise: <title>`` heading followed by its statement;
* every sphinx-exercise solution (``{solution-start}`` … ``{solution-end}``, code cells and text)
  leaves the code cells and goes into one markdown cell as a collapsed ``<details>`` block, the
  same drop-down the book's page shows: nothing visible until the resident opens it, and nothing
  that *Run All* executes (``solutions="omit"`` drops them instead, for a course without them);
* the hidden set-up cell (``remove-input``) and other hidden cells stay, runnable, with their
  source collapsed; the answer cells with their checker calls are untouched;
* no outputs, no execution counts, no jupytext metadata (so JupyterLab never pairs the
  generated file with its chapter and never writes back into ``book/``).

A directive the converter does not know stops the conversion with a message that names the file,
the line and the directive: raw MyST syntax never reaches a notebook silently.

The JupyterLab side (:func:`install_jupyter_config`) merges the repository's ``jupyter/`` settings
into the running environment: idle kernels culled after 10 minutes, a closed notebook's kernel shut
down, and ``.md`` chapters opened as notebooks (jupytext) by default.

Command line::

    python -m helpers.book.notebooks build [CHAPTER.md ...] [--out notebooks] [--solutions details|omit]
    python -m helpers.book.notebooks install-config
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import REPO  # the repository root: one definition, in helpers.data

#: Folder the generated notebooks go to (gitignored; never committed).
NOTEBOOK_DIR = REPO / "notebooks"
#: The repository's JupyterLab / Jupyter Server settings (see :func:`install_jupyter_config`).
JUPYTER_CONFIG_DIR = REPO / "jupyter"
SOLUTION_MODES = ("details", "omit")

# sphinx-book-theme / MyST admonition kinds and the title each one shows when it has none
ADMONITION_TITLES = {
    "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
    "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
    "seealso": "See also", "admonition": "",
}
# directives whose content has no meaning in a notebook (the book's table of contents)
DROPPED_DIRECTIVES = {"tableofcontents"}

_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\{(?P<name>[A-Za-z][\w-]*)\}[ \t]*(?P<arg>.*?)\s*$")
_OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):(?:\s+(?P<value>.*?))?\s*$")
# what must never be left in a generated notebook's markdown
RAW_MYST = re.compile(r"^\s*(`{3,}|:{3,})\{[\w-]+\}|^\s*:(label|class|nonumber|tags|name):"
                      r"|\{(solution-start|solution-end|exercise|admonition)\}",
                      re.M)


class NotebookConversionError(ValueError):
    """A chapter cannot become a notebook: the message names the file, the line and what to do."""


@dataclass(frozen=True)
class _SolutionStart:
    label: str
    line: int


@dataclass(frozen=True)
class _SolutionEnd:
    line: int


def _closing(fence: str) -> re.Pattern:
    return re.compile(rf"^\s{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")


def _quote(text: str) -> str:
    return "\n".join(">" if not ln.strip() else f"> {ln}" for ln in text.strip("\n").splitlines())


def convert_markdown(text: str, *, source: str = "<markdown>", first_line: int = 1) -> list:
    """Turn the MyST markdown of one cell into plain markdown pieces and solution markers.

    Parameters
    ----------
    text : str
        The markdown (jupytext gives one string per markdown cell).
    source : str, optional
        File name used in error messages.
    first_line : int, optional
        Line number of ``text``'s first line in ``source`` (for error messages).

    Returns
    -------
    list
        Plain-markdown strings, with solution markers (``_SolutionStart`` / ``_SolutionEnd``)
        in between where a sphinx-exercise solution starts or ends.

    Raises
    ------
    NotebookConversionError
        On an unknown directive or a fence that is never closed.

    Examples
    --------
    >>> convert_markdown(":::{tip}\\nRead the header first.\\n:::")
    ['> **Tip**\\n>\\n> Read the header first.']
    >>> convert_markdown("```{exercise} Dice by hand\\n:label: ex7-dice\\n\\nCompute it.\\n```")
    ['### Exercise: Dice by hand\\n\\nCompute it.']
    """
    lines = text.splitlines()
    out: list = []
    buf: list[str] = []

    def flush():
        piece = "\n".join(buf).strip("\n")
        buf.clear()
        if piece.strip():
            out.append(piece)

    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            buf.append(lines[i])
            i += 1
            continue
        where = f"{source}, line {first_line + i}"
        name, arg = m["name"], m["arg"]
        inner, j = _read_directive(lines, i, m["fence"], name, where)
        if name == "solution-start":
            flush()
            out.append(_SolutionStart(arg.strip(), first_line + i))
        elif name == "solution-end":
            flush()
            out.append(_SolutionEnd(first_line + i))
        elif name not in DROPPED_DIRECTIVES:
            buf.append(_directive_markdown(name, arg, inner, source=source, first_line=first_line + i + 1,
                                           where=where))
        i = j + 1
    flush()
    return out


def _read_directive(lines: list[str], i: int, fence: str, name: str, where: str) -> tuple[str, int]:
    """The body of the directive opened on ``lines[i]`` (its options skipped) and the index of its closing fence."""
    close = _closing(fence)
    j = i + 1
    while j < len(lines) and _OPTION.match(lines[j]) and not close.match(lines[j]):
        j += 1
    body: list[str] = []
    while j < len(lines) and not close.match(lines[j]):
        body.append(lines[j])
        j += 1
    if j >= len(lines):
        raise NotebookConversionError(
            f"{where}: the {{{name}}} directive opened with {fence} is never closed; "
            f"close it with a line of {fence} (the chapter will not build either)")
    return "\n".join(body).strip("\n"), j


def _directive_markdown(name: str, arg: str, inner: str, *, source: str, first_line: int, where: str) -> str:
    """Plain markdown for an exercise or an admonition directive; any other directive is refused."""
    if name != "exercise" and name not in ADMONITION_TITLES:
        raise NotebookConversionError(
            f"{where}: the {{{name}}} directive has no notebook form; use one the converter knows "
            f"({', '.join(sorted(set(ADMONITION_TITLES) | {'exercise', 'solution-start', 'solution-end'}))}) "
            f"or add a case for it in helpers/book/notebooks.py")
    rendered = _join_pieces(convert_markdown(inner, source=source, first_line=first_line), where)
    if name == "exercise":
        title = arg.strip()
        heading = f"### Exercise: {title}" if title else "### Exercise"
        return heading + (f"\n\n{rendered}" if rendered else "")
    title = arg.strip() or ADMONITION_TITLES[name]
    return _quote((f"**{title}**\n\n" if title else "") + rendered)


def _join_pieces(pieces: list, where: str) -> str:
    if any(not isinstance(p, str) for p in pieces):
        raise NotebookConversionError(f"{where}: a solution cannot start or end inside another directive; "
                                      "put {solution-start} and {solution-end} at the top level of the chapter")
    return "\n\n".join(pieces)


def _details(label: str, parts: list[tuple[str, str]]) -> str:
    """The collapsed ``<details>`` block that holds one solution (markdown and code)."""
    body = []
    for kind, text in parts:
        if kind == "code":
            body.append(f"```python\n{text.strip()}\n```")
        else:
            body.append(text.strip())
    summary = "<summary><b>Solution</b> (click to show)</summary>"
    anchor = f"<!-- solution {html.escape(label)} -->" if label else ""
    return "\n\n".join(["<details>" + anchor, summary, *body, "</details>"])


def _read_chapter(path: Path) -> Any:
    """The chapter as jupytext reads it (a notebook of MyST cells); refused with a message a resident can act on."""
    import jupytext

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookConversionError(f"{path}: no such chapter; give the path of a book/0N_*.md file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookConversionError(f"{path}: cannot read the chapter ({err.__class__.__name__}: {err}); "
                                      "check the file's permissions and that it is UTF-8 text") from None
    try:
        return jupytext.reads(text, fmt="md:myst")
    except Exception as err:  # jupytext's own errors are not a resident's message
        raise NotebookConversionError(f"{path}: jupytext cannot read it as MyST markdown ({err}); "
                                      "check its front matter and code-cell fences") from None


class _CellWriter:
    """The student notebook's cells, added in chapter order; holds the solution being collected."""

    def __init__(self, path: Path, solutions: str):
        import nbformat

        self.nbformat = nbformat
        self.path, self.solutions = path, solutions
        self.solution: list[tuple[str, str]] | None = None
        self.label = ""
        self.cells = [nbformat.v4.new_markdown_cell(
            f"*This notebook is generated from the book's chapter `book/{path.name}`. Run the cells in order; "
            "each exercise has an answer cell that checks what you type, and its solution is in the "
            "collapsed **Solution** block below it.*" if solutions == "details" else
            f"*This notebook is generated from the book's chapter `book/{path.name}`. Run the cells in order; "
            "each exercise has an answer cell that checks what you type.*")]

    def add_markdown(self, pieces: list) -> None:
        for p in pieces:
            if isinstance(p, _SolutionStart):
                self._start_solution(p)
            elif isinstance(p, _SolutionEnd):
                self._end_solution(p)
            elif self.solution is not None:
                self.solution.append(("markdown", p))
            else:
                self.cells.append(self.nbformat.v4.new_markdown_cell(p))

    def add_code(self, source: str, tags: list[str]) -> None:
        if self.solution is not None:
            self.solution.append(("code", source))
            return
        meta: dict[str, Any] = {"tags": tags} if tags else {}
        if {"remove-input", "remove-cell", "hide-input", "hide-cell"} & set(tags):
            meta["jupyter"] = {"source_hidden": True}
        self.cells.append(self.nbformat.v4.new_code_cell(source, metadata=meta))

    def _start_solution(self, p: _SolutionStart) -> None:
        if self.solution is not None:
            raise NotebookConversionError(f"{self.path}, line {p.line}: a {{solution-start}} inside the "
                                          f"solution {self.label!r}; close that one with {{solution-end}} first")
        self.solution, self.label = [], p.label

    def _end_solution(self, p: _SolutionEnd) -> None:
        if self.solution is None:
            raise NotebookConversionError(f"{self.path}, line {p.line}: {{solution-end}} without a "
                                          "{solution-start} before it")
        if self.solutions == "details" and self.solution:
            self.cells.append(self.nbformat.v4.new_markdown_cell(_details(self.label, self.solution)))
        self.solution = None

    def finish(self) -> list:
        """The cells, once every solution is closed and no MyST syntax is left in the markdown."""
        if self.solution is not None:
            raise NotebookConversionError(f"{self.path}: the solution {self.label!r} has no {{solution-end}}; "
                                          "close it with ````{solution-end}````")
        for c in self.cells:
            bad = RAW_MYST.search(c.source) if c.cell_type == "markdown" else None
            if bad:
                raise NotebookConversionError(f"{self.path}: MyST syntax {bad.group(0).strip()!r} would be left in "
                                              "the notebook; write it as a directive the converter knows "
                                              "(helpers/book/notebooks.py)")
        return self.cells


def student_notebook(path: str | os.PathLike, *, solutions: str = "details") -> Any:
    """Read one MyST chapter and return the notebook a resident opens.

    Parameters
    ----------
    path : str or Path
        A MyST-markdown chapter (``book/0N_*.md``).
    solutions : {"details", "omit"}, optional
        ``"details"`` (default): each solution becomes a collapsed ``<details>`` markdown cell,
        revealed by a click, never run by *Run All*. ``"omit"``: solutions are left out.

    Returns
    -------
    nbformat.NotebookNode
        nbformat 4, no outputs, ``python3`` kernel, without jupytext metadata.

    Raises
    ------
    NotebookConversionError
        When the chapter is missing, unreadable, or uses a directive with no notebook form.

    Examples
    --------
    >>> nb = student_notebook(REPO / "book" / "02_normalize.md")
    >>> [c.cell_type for c in nb.cells][:3]
    ['markdown', 'markdown', 'code']
    >>> any("solution-start" in c.source for c in nb.cells)
    False
    """
    import nbformat

    if solutions not in SOLUTION_MODES:
        raise ValueError(f"solutions={solutions!r}: expected one of {SOLUTION_MODES}")
    path = Path(path)
    src = _read_chapter(path)
    writer = _CellWriter(path, solutions)
    line = 1
    for cell in src.cells:
        if cell.cell_type == "markdown":
            writer.add_markdown(convert_markdown(cell.source, source=str(path), first_line=line))
        elif cell.cell_type == "code":
            writer.add_code(cell.source, list(cell.metadata.get("tags", [])))
        else:  # raw cells pass through
            writer.cells.append(nbformat.v4.new_raw_cell(cell.source))
        line += cell.source.count("\n") + 2
    cells = writer.finish()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def chapters(book_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered chapters ``NN*_*.md`` of ``book_dir`` (default: the repository's ``book/``).

    Examples
    --------
    >>> [p.name for p in chapters()][:2]
    ['00_pacs.md', '01_load.md']
    >>> "07b_tumour.md" in [p.name for p in chapters()]
    True
    """
    return sorted(Path(book_dir or REPO / "book").glob("[0-9][0-9]*_*.md"))


def write_notebooks(paths: Iterable[str | os.PathLike] | None = None, out_dir: str | os.PathLike | None = None, *,
                    solutions: str = "details") -> list[Path]:
    """Write the student notebook of each chapter to ``out_dir/<name>.ipynb``, atomically.

    Parameters
    ----------
    paths : iterable of path, optional
        Chapters to convert (default: every ``book/0N_*.md``).
    out_dir : path, optional
        Destination folder (default: ``notebooks/`` at the repository root; created).
    solutions : {"details", "omit"}, optional
        See :func:`student_notebook`.

    Returns
    -------
    list of Path
        The notebooks written, in chapter order.

    Raises
    ------
    NotebookConversionError
        From :func:`student_notebook`; nothing is written for a chapter that fails.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     [p.name for p in write_notebooks([REPO / "book" / "02_normalize.md"], d)]
    ['02_normalize.ipynb']
    """
    import nbformat

    from ..export import atomic_write

    out = Path(out_dir) if out_dir is not None else NOTEBOOK_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in (list(paths) if paths is not None else chapters()):
        nb = student_notebook(p, solutions=solutions)
        target = out / (Path(p).stem + ".ipynb")
        def write(tmp: str, nb: Any = nb) -> None:
            nbformat.write(nb, tmp)

        atomic_write(target, write)
        written.append(target)
    return written


def install_jupyter_config(prefix: str | os.PathLike | None = None) -> list[Path]:
    """Copy the repository's Jupyter settings into an environment (a venv, Binder's conda env).

    Merges ``jupyter/jupyter_server_config.json`` (kernel culling) into
    ``<prefix>/etc/jupyter/jupyter_server_config.json`` and ``jupyter/overrides.json`` into
    ``<prefix>/share/jupyter/lab/settings/overrides.json`` (JupyterLab's defaults: ``.md`` opens
    as a notebook, a closed notebook's kernel shuts down, no news requests). Settings already
    there for other keys are kept; running it again changes nothing.

    Parameters
    ----------
    prefix : path, optional
        The environment's root (default: ``sys.prefix``, the running Python's).

    Returns
    -------
    list of Path
        The two files written.

    Notes
    -----
    Jupyter Server reads ``jupyter_server_config.d/*.json`` only for extension switches, so the
    culling settings go into the environment's ``jupyter_server_config.json`` itself.
    """
    from ..export import atomic_write

    prefix = Path(prefix or sys.prefix)
    targets = [prefix / "etc" / "jupyter" / "jupyter_server_config.json",
               prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"]
    sources = [JUPYTER_CONFIG_DIR / "jupyter_server_config.json", JUPYTER_CONFIG_DIR / "overrides.json"]
    for target, source in zip(targets, sources):
        merged = {}
        if target.is_file():
            try:
                merged = json.loads(target.read_text())
            except ValueError:
                raise ValueError(f"{target} is not valid JSON: fix or remove it, then run "
                                 "python -m helpers.book.notebooks install-config again") from None
        for section, settings in json.loads(source.read_text()).items():
            merged.setdefault(section, {}).update(settings)
        text = json.dumps(merged, indent=2) + "\n"
        def write_text(tmp: str, text: str = text) -> None:
            Path(tmp).write_text(text, encoding="utf-8")

        atomic_write(target, write_text)
    return targets


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m helpers.book.notebooks",
                                 description="Generate the student notebooks from the MyST chapters; "
                                             "install the project's JupyterLab settings.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write notebooks/<chapter>.ipynb for each chapter")
    b.add_argument("chapters", nargs="*", help="chapter files (default: every book/0N_*.md)")
    b.add_argument("--out", default=str(NOTEBOOK_DIR), help="output folder (default: notebooks/)")
    b.add_argument("--solutions", choices=SOLUTION_MODES, default="details",
                   help="details: collapsed, click to show (default); omit: left out")
    c = sub.add_parser("install-config", help="copy jupyter/ settings into this Python environment")
    c.add_argument("--prefix", default=None, help="environment root (default: this Python's sys.prefix)")
    a = ap.parse_args(argv)
    if a.cmd == "install-config":
        for t in install_jupyter_config(a.prefix):
            print(f"wrote {t}")
        return 0
    t0 = time.perf_counter()
    try:
        written = write_notebooks([Path(c) for c in a.chapters] or None, a.out, solutions=a.solutions)
    except NotebookConversionError as err:
        print(f"helpers.book.notebooks: {err}", file=sys.stderr)
        return 1
    where = Path(a.out)
    try:
        where = where.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    print(f"{len(written)} notebooks written to {where}/ in {time.perf_counter() - t0:.1f} s "
          f"(solutions: {a.solutions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
