"""helpers.book.notebooks: MyST chapters to student notebooks (every directive kind the chapters use)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import nbformat
import pytest
from conftest import REPO

from helpers.book import notebooks
from helpers.book.notebooks import NotebookConversionError, convert_markdown, student_notebook

FRONT = textwrap.dedent("""\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---
    """)

CHAPTER = FRONT + textwrap.dedent("""\

    # 9. A test chapter

    :::{admonition} In this chapter
    :class: tip

    **Objectives.** After this chapter you can

    - read a header;
    :::

    ```{code-cell} ipython3
    :tags: [remove-input]

    import numpy as np
    ```

    Some text with $x^2$ and a `{code}` literal.

    ```{code-cell} ipython3
    :tags: [raises-exception]

    1 / 0
    ```

    ## Exercises

    ```{exercise} Stored values to HU
    :label: ex9-hu
    :nonumber:

    Convert `stored` to HU.
    ```

    ```{code-cell} ipython3
    answer = ...  # your answer
    print("checked", answer)
    ```

    ````{solution-start} ex9-hu
    :class: dropdown
    ````

    First the slope, then the intercept:

    ```{code-cell} ipython3
    SECRET_SOLUTION_LINE = 42 * 2
    ```

    ````{solution-end}
    ````

    ```{exercise}
    :label: ex9-untitled

    No title here.
    ```

    ````{solution-start} ex9-untitled
    :class: dropdown
    ````

    ```{code-cell} ipython3
    OTHER_SOLUTION = 1
    ```

    ````{solution-end}
    ````

    ## Key points

    ```{code-cell} ipython3
    :tags: [remove-cell]

    cleanup = True
    ```
    """)


@pytest.fixture
def chapter(tmp_path):
    p = tmp_path / "09_test.md"
    p.write_text(CHAPTER)
    return p


def markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")


class TestConvertMarkdown:
    def test_admonition_with_title_becomes_a_quote(self):
        out = convert_markdown(":::{admonition} In this chapter\n:class: tip\n\n- one\n- two\n:::")
        assert out == ["> **In this chapter**\n>\n> - one\n> - two"]

    @pytest.mark.parametrize("kind,title", [("note", "Note"), ("warning", "Warning"), ("seealso", "See also")])
    def test_named_admonition_takes_its_default_title(self, kind, title):
        assert convert_markdown(f"```{{{kind}}}\nBody.\n```") == [f"> **{title}**\n>\n> Body."]

    def test_exercise_title_and_body_options_dropped(self):
        out = convert_markdown("Before.\n\n```{exercise} Dice by hand\n:label: ex7-dice\n:nonumber:\n\n"
                               "Compute.\n```\n\nAfter.")
        assert out == ["Before.\n\n### Exercise: Dice by hand\n\nCompute.\n\nAfter."]

    def test_exercise_without_title(self):
        assert convert_markdown("```{exercise}\n:label: x\n\nDo it.\n```") == ["### Exercise\n\nDo it."]

    def test_solution_markers(self):
        out = convert_markdown("````{solution-end}\n````\n\n````{solution-start} ex1\n:class: dropdown\n````")
        assert [type(p).__name__ for p in out] == ["_SolutionEnd", "_SolutionStart"]
        assert out[1].label == "ex1"

    def test_nested_directive_inside_admonition(self):
        out = convert_markdown("::::{admonition} Outer\n:::{tip}\nInner.\n:::\n::::")
        assert out == ["> **Outer**\n>\n> > **Tip**\n> >\n> > Inner."]

    def test_tableofcontents_dropped(self):
        assert convert_markdown("# Title\n\n```{tableofcontents}\n```\n") == ["# Title"]

    def test_plain_code_fence_kept(self):
        text = "Run:\n\n```bash\n./tasks.sh lab\n```"
        assert convert_markdown(text) == [text]

    def test_unknown_directive_names_file_line_and_remedy(self):
        with pytest.raises(NotebookConversionError,
                           match=r"ch\.md, line 3: the \{figure\} directive has no notebook form"
                                 r".*helpers/book/notebooks\.py"):
            convert_markdown("a\n\n```{figure} x.png\n```", source="ch.md")

    def test_unclosed_fence(self):
        with pytest.raises(NotebookConversionError, match=r"ch\.md, line 1: the \{note\} directive .* never closed"):
            convert_markdown(":::{note}\nno end", source="ch.md")


class TestStudentNotebook:
    def test_no_solution_code_anywhere_and_none_run(self, chapter):
        nb = student_notebook(chapter)
        assert "SECRET_SOLUTION_LINE" not in code(nb)  # not a code cell: Run All cannot execute it
        assert "OTHER_SOLUTION" not in code(nb)

    def test_solution_in_a_collapsed_details_block(self, chapter):
        nb = student_notebook(chapter)
        sol = [c.source for c in nb.cells if c.cell_type == "markdown" and "<details>" in c.source]
        assert len(sol) == 2
        assert sol[0].startswith("<details>") and sol[0].rstrip().endswith("</details>")
        assert "<summary><b>Solution</b>" in sol[0]
        assert "```python\nSECRET_SOLUTION_LINE = 42 * 2\n```" in sol[0]
        assert "First the slope, then the intercept:" in sol[0]  # the solution's prose goes with it

    def test_solutions_omitted(self, chapter):
        nb = student_notebook(chapter, solutions="omit")
        text = json.dumps(nb)
        assert "SECRET_SOLUTION_LINE" not in text and "First the slope" not in text and "<details>" not in text

    def test_no_raw_myst_left(self, chapter):
        md = markdown(student_notebook(chapter))
        for raw in ("{admonition}", ":label:", ":nonumber:", ":class:", "{exercise}", "{solution-start}",
                    "{solution-end}", ":::", "{code-cell}", ":tags:"):
            assert raw not in md, raw
        assert "### Exercise: Stored values to HU" in md
        assert "> **In this chapter**" in md
        assert "a `{code}` literal" in md  # inline code that merely looks like a role is left alone

    def test_answer_and_checker_cells_ready(self, chapter):
        nb = student_notebook(chapter)
        assert 'answer = ...  # your answer\nprint("checked", answer)' in code(nb)

    def test_setup_cell_kept_hidden_and_runnable(self, chapter):
        nb = student_notebook(chapter)
        setup = next(c for c in nb.cells if c.cell_type == "code" and "import numpy" in c.source)
        assert setup.metadata["jupyter"] == {"source_hidden": True}
        assert setup.metadata["tags"] == ["remove-input"]
        removed = next(c for c in nb.cells if c.cell_type == "code" and "cleanup" in c.source)
        assert removed.metadata["jupyter"]["source_hidden"] is True

    def test_raises_exception_tag_kept(self, chapter):
        nb = student_notebook(chapter)
        cell = next(c for c in nb.cells if c.cell_type == "code" and "1 / 0" in c.source)
        assert cell.metadata["tags"] == ["raises-exception"]

    def test_valid_no_outputs_no_jupytext_metadata(self, chapter):
        nb = student_notebook(chapter)
        nbformat.validate(nb)
        assert "jupytext" not in nb.metadata
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")

    def test_first_cell_says_where_it_comes_from(self, chapter):
        first = student_notebook(chapter).cells[0]
        assert "book/09_test.md" in first.source and "Solution" in first.source

    def test_missing_chapter_one_clear_line(self, tmp_path):
        with pytest.raises(NotebookConversionError, match=r"no_such\.md: no such chapter") as e:
            student_notebook(tmp_path / "no_such.md")
        assert "\n" not in str(e.value)

    def test_unreadable_chapter(self, tmp_path):
        p = tmp_path / "bad.md"
        p.write_bytes(b"\xff\xfe\x00 not utf-8 \xff")
        with pytest.raises(NotebookConversionError, match=r"bad\.md: cannot read the chapter .*UTF-8"):
            student_notebook(p)

    def test_unclosed_solution(self, tmp_path):
        p = tmp_path / "c.md"
        p.write_text(FRONT + "\n````{solution-start} ex1\n:class: dropdown\n````\n\n"
                     "```{code-cell} ipython3\nx = 1\n```\n")
        with pytest.raises(NotebookConversionError, match=r"the solution 'ex1' has no \{solution-end\}"):
            student_notebook(p)

    def test_solution_end_without_start(self, tmp_path):
        p = tmp_path / "c.md"
        p.write_text(FRONT + "\n````{solution-end}\n````\n")
        with pytest.raises(NotebookConversionError, match=r"\{solution-end\} without a \{solution-start\}"):
            student_notebook(p)

    def test_bad_mode(self, chapter):
        with pytest.raises(ValueError, match="solutions='all'"):
            student_notebook(chapter, solutions="all")


class TestEveryChapter:
    """The real chapters: every exercise keeps its title, every solution leaves the code cells."""

    @pytest.mark.parametrize("path", notebooks.chapters(), ids=lambda p: p.stem)
    def test_chapter(self, path):
        src = path.read_text()
        nb = student_notebook(path)
        md, cc = markdown(nb), code(nb)
        titles = re.findall(r"^```\{exercise\}[ \t]*(.*)$", src, re.M)
        assert titles and all((f"### Exercise: {t.strip()}" if t.strip() else "### Exercise\n") in md for t in titles)
        assert md.count("<details>") == src.count("{solution-start}")
        assert not notebooks.RAW_MYST.search(md)
        # every line of every solution code cell is gone from the code cells (unless the chapter
        # also has it outside its solutions, e.g. the checker call of the answer cell)
        blocks = re.findall(r"````\{solution-start\}.*?````\{solution-end\}", src, re.S)
        outside = re.sub(r"````\{solution-start\}.*?````\{solution-end\}", "", src, flags=re.S)
        for block in blocks:
            for sol in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", block, re.S):
                for line in map(str.strip, sol.splitlines()):
                    if line and not line.startswith(":") and line not in outside:
                        assert line not in cc, f"{path.name}: solution line in a code cell: {line}"


class TestCommandLine:
    """``python -m helpers.book.notebooks`` (its ``main``, called in-process to keep the suite fast)."""

    def test_build_writes_notebooks(self, tmp_path, capsys):
        assert notebooks.main(["build", str(REPO / "book" / "02_normalize.md"), "--out", str(tmp_path)]) == 0
        assert "1 notebooks written" in capsys.readouterr().out
        nb = nbformat.read(tmp_path / "02_normalize.ipynb", as_version=4)
        nbformat.validate(nb)
        assert [p.name for p in tmp_path.iterdir()] == ["02_normalize.ipynb"]  # no temporary left

    def test_missing_chapter_one_line_no_traceback(self, tmp_path, capsys):
        assert notebooks.main(["build", str(tmp_path / "nope.md"), "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "Traceback" not in err
        assert "nope.md: no such chapter" in err
        assert not list(tmp_path.glob("*.ipynb"))

    def test_module_entry_point(self):
        r = subprocess.run([sys.executable, "-m", "helpers.book.notebooks", "--help"],
                           capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0 and "build" in r.stdout and "install-config" in r.stdout


class TestInstallJupyterConfig:
    def test_writes_and_merges(self, tmp_path):
        lab = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
        lab.parent.mkdir(parents=True)
        lab.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
        server = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
        server.parent.mkdir(parents=True)
        server.write_text(json.dumps({"ServerApp": {"ip": "0.0.0.0"}}))
        assert notebooks.install_jupyter_config(tmp_path) == [server, lab]
        cfg = json.loads(server.read_text())
        assert cfg["MappingKernelManager"]["cull_idle_timeout"] == 600
        assert cfg["ServerApp"] == {"ip": "0.0.0.0"}  # kept
        merged = json.loads(lab.read_text())
        assert merged["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}  # kept
        assert merged["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["markdown"] == "Jupytext Notebook"
        assert notebooks.install_jupyter_config(tmp_path) == [server, lab]  # again: same files
        assert json.loads(lab.read_text()) == merged

    def test_invalid_json_already_there(self, tmp_path):
        bad = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
        bad.parent.mkdir(parents=True)
        bad.write_text("{not json")
        with pytest.raises(ValueError, match=r"jupyter_server_config\.json is not valid JSON: fix or remove it"):
            notebooks.install_jupyter_config(tmp_path)
