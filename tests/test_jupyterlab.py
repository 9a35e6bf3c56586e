"""The notebook door, in a real JupyterLab and Debian's chromium.

JupyterLab (the pinned one in .venv) starts on 127.0.0.1 with a token and the project's settings
(``helpers.book.notebooks.install_jupyter_config`` into a temporary prefix: kernel culling, the
``.md``-as-notebook default viewer), serving a temporary folder laid out like the repository's
(``notebooks/02_normalize.ipynb`` from ``helpers.book.notebooks``). Chapter 2 is opened through the path
a Binder button uses (``lab/tree/notebooks/02_normalize.ipynb``) and checked as a resident would
see it: a notebook, no raw MyST, no solution code visible, a solution revealed with one click; then
Run All, a wrong and a right answer typed into an exercise and the checker's verdicts read, and a
window/level slider moved until the image changes. Chapter 5's live viewer is checked for its size.

Screenshots go to ``_build/screenshots/lab_*.png``. Every wait is on a condition, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = REPO / "_build" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
START_TIMEOUT_S = 120       # JupyterLab start on a loaded 2-core machine
KERNEL_TIMEOUT_MS = 120_000  # a kernel start, or one cell
RUN_ALL_TIMEOUT_MS = 240_000
CHAPTER = "02_normalize"
ANSWER_MARK = "answer = ...  # an array of HU"
WRONG = "answer = stored * 2.0\nchecks.check_hu(answer, stored, float(ds.RescaleSlope), float(ds.RescaleIntercept))"
RIGHT = ("answer = stored.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)\n"
         "checks.check_hu(answer, stored, float(ds.RescaleSlope), float(ds.RescaleIntercept))")
RAW_MYST = ["{admonition}", "{exercise}", "{solution-start}", "{solution-end}", ":label:", ":nonumber:",
            ":class: dropdown", ":::{", "```{"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def solution_lines(chapter: Path) -> list[str]:
    src = chapter.read_text()
    outside = re.sub(r"````\{solution-start\}.*?````\{solution-end\}", "", src, flags=re.S)
    out = []
    for block in re.findall(r"````\{solution-start\}.*?````\{solution-end\}", src, re.S):
        for cell in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", block, re.S):
            out += [ln.strip() for ln in cell.splitlines() if len(ln.strip()) >= 8 and ln.strip() not in outside]
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1; yields (base URL, token, root folder, log path)."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.fail("JupyterLab is not installed in .venv: run ./tasks.sh setup", pytrace=False)
    from helpers.book.notebooks import install_jupyter_config, write_notebooks

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    write_notebooks([REPO / "book" / f"{CHAPTER}.md"], root / "notebooks")
    viewer = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from helpers.display import widget_with_still\nfrom helpers.io import load_series\n"
        "from helpers.book.notebook import show_widget\nfrom helpers.sample import default_dicom_dir\n"
        "vol = load_series(default_dicom_dir())\nshow_widget(*widget_with_still(vol, window='lung'))")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(viewer, root / "viewer.ipynb")
    (root / "book").mkdir()
    shutil.copyfile(REPO / "book" / f"{CHAPTER}.md", root / "book" / f"{CHAPTER}.md")
    prefix = tmp / "env"
    install_jupyter_config(prefix)
    env = {**os.environ,
           "JUPYTER_CONFIG_PATH": str(prefix / "etc" / "jupyter"),   # the project's server settings
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "IPYTHONDIR": str(tmp / "ipython")}
    token, port = os.urandom(16).hex(), free_port()
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.app_settings_dir={prefix / 'share' / 'jupyter' / 'lab' / 'settings'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "server.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=logf, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)  # polling interval of the readiness check, not a wait for an effect
        yield base, token, root, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()



def kernels(base, token, attempts=40):
    """The server's kernels.  Listing them while one is shutting down (the previous test closed
    its tab) can answer 500 for a moment: ask again, a bounded number of times."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts - 1:
                raise
            time.sleep(0.25)  # retry interval while the server finishes a kernel shutdown


def open_notebook(browser, base, token, path, *, markdown=True):
    before = {k["id"] for k in kernels(base, token)}
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    # ?reset: a fresh workspace, so the tabs of an earlier test do not come back
    page.goto(f"{base}/lab/tree/{path}?reset&token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=KERNEL_TIMEOUT_MS)
    if markdown:  # every markdown cell rendered (they come a moment after the first cell)
        page.wait_for_function(
            """() => { const m = document.querySelectorAll('.jp-Notebook .jp-MarkdownCell').length;
                       const done = document.querySelectorAll('.jp-Notebook .jp-MarkdownCell .jp-RenderedMarkdown');
                       return m > 0 && done.length === m; }""",
            timeout=KERNEL_TIMEOUT_MS)
    # the kernel is up: the server has a new one for this notebook, and it is idle
    deadline = time.monotonic() + KERNEL_TIMEOUT_MS / 1000
    while not any(k["id"] not in before and k.get("execution_state") == "idle" for k in kernels(base, token)):
        assert time.monotonic() < deadline, f"no idle kernel after {KERNEL_TIMEOUT_MS / 1000:.0f} s"
        page.wait_for_timeout(250)  # polling interval of the REST check
    page.kernel_id = next(k["id"] for k in kernels(base, token) if k["id"] not in before)
    return ctx, page


def code_cell(page, text):
    index = page.evaluate(
        """t => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).findIndex(
               c => { const e = c.querySelector('.jp-InputArea-editor'); return !!e && e.textContent.includes(t); })""",
        text)
    assert index >= 0, f"no code cell containing {text!r}"
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


def run_cell_with(page, cell, source):
    editor = cell.locator(".jp-InputArea-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(source)
    page.keyboard.press("Shift+Enter")


def feedback_of(cell, label, timeout=KERNEL_TIMEOUT_MS):
    fb = cell.locator(".jp-OutputArea-output .exercise-feedback")
    fb.filter(has_text=label).wait_for(timeout=timeout)
    return fb.inner_text()


def test_chapter_2_in_jupyterlab(lab, browser):
    base, token, root, log = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx, page = open_notebook(browser, base, token, f"notebooks/{CHAPTER}.ipynb")
    try:
        # a notebook, not the text editor; no raw MyST anywhere
        assert page.locator(".jp-NotebookPanel").count() == 1 and page.locator(".jp-FileEditor").count() == 0
        text = page.locator(".jp-Notebook").text_content()
        assert not [r for r in RAW_MYST if r in text], [r for r in RAW_MYST if r in text]
        md = " ".join(page.locator(".jp-MarkdownCell .jp-RenderedMarkdown").all_text_contents())
        assert "Exercise: Stored values to HU" in md and "In this chapter" in md
        # no solution code in any code cell, every solution collapsed and not visible
        sol = solution_lines(REPO / "book" / f"{CHAPTER}.md")
        editors = "\n".join(page.locator(".jp-CodeCell .jp-InputArea-editor").all_text_contents())
        assert sol and not [ln for ln in sol if ln in editors]
        details = page.locator(".jp-RenderedMarkdown details")
        assert details.count() == 3
        for k in range(details.count()):
            d = details.nth(k)
            assert d.get_attribute("open") is None
            assert not d.locator("pre").is_visible()
        # the set-up cell is there, collapsed
        setup = page.locator(".jp-Notebook .jp-CodeCell").first
        assert setup.locator(".jp-InputPlaceholder").count() == 1
        assert "import warnings" in setup.locator(".jp-InputPlaceholder").text_content()
        page.screenshot(path=str(SHOTS / "lab_02_opened.png"))

        # Run All, from the Run menu, until every code cell has an execution count
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
        # (a collapsed cell shows no prompt; every other one must show its execution count)
        page.wait_for_function(
            """() => { const p = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
                          .map(e => e.textContent.trim()).filter(t => t !== '');
                      return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }""",
            timeout=RUN_ALL_TIMEOUT_MS)
        run_all_s = time.perf_counter() - t0
        outputs = " ".join(page.locator(".jp-Notebook .jp-OutputArea-output").all_text_contents())
        assert "Traceback" not in outputs
        assert "Not answered yet" in outputs  # the checker cells ran with answer = ...
        page.screenshot(path=str(SHOTS / "lab_02_ran.png"))

        # a wrong answer, then the right one, and the checker's verdicts
        cell = code_cell(page, ANSWER_MARK)
        cell.scroll_into_view_if_needed()
        run_cell_with(page, cell, WRONG)
        wrong = feedback_of(cell, "Not yet")
        cell.screenshot(path=str(SHOTS / "lab_02_wrong.png"))
        run_cell_with(page, cell, RIGHT)
        right = feedback_of(cell, "Right")
        cell.screenshot(path=str(SHOTS / "lab_02_right.png"))
        assert wrong.startswith("Not yet:") and right.startswith("Right:")

        # a solution revealed with one click on its summary
        first = details.first
        first.locator("summary").scroll_into_view_if_needed()
        first.locator("summary").click()
        assert first.locator("pre").is_visible()
        assert "RescaleSlope" in first.locator("pre").inner_text()
        first.screenshot(path=str(SHOTS / "lab_02_solution_revealed.png"))

        # the live window/level viewer: move the level slider, the image changes
        widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-slider")).first
        widget.scroll_into_view_if_needed()
        img = widget.locator("img").first
        before = img.get_attribute("src")
        readout = widget.locator(".widget-readout").first
        level_before = readout.text_content()
        widget.locator(".noUi-handle, .ui-slider-handle, .slider-handle").first.click()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, old]) => el.getAttribute('src') !== old",
                               arg=[img.element_handle(), before], timeout=KERNEL_TIMEOUT_MS)
        assert readout.text_content() != level_before
        widget.screenshot(path=str(SHOTS / "lab_02_slider_moved.png"))
        print(f"JupyterLab chapter 2: opened + Run All {run_all_s:.1f} s, whole test {time.perf_counter() - t0:.1f} s")
    finally:
        ctx.close()
    # the project's server settings were in force: the kernel culler runs with 10 minutes
    assert re.search(r"[Cc]ulling kernels with idle durations > 600 seconds", log.read_text()), log.read_text()[-2000:]


def test_chapter_md_opens_as_a_notebook(lab, browser):
    """Anyone who opens a chapter's .md directly gets the notebook view (the default viewer setting)."""
    base, token, _root, _log = lab
    ctx, page = open_notebook(browser, base, token, f"book/{CHAPTER}.md")
    try:
        assert page.locator(".jp-NotebookPanel").count() == 1 and page.locator(".jp-FileEditor").count() == 0
        page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length > 10",
                               timeout=KERNEL_TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "lab_02_md_as_notebook.png"))
    finally:
        ctx.close()


def test_chapter_5_viewer_fits(lab, browser):
    """The live slice viewer shows its image at its own size, slider and image on one screen;
    closing the notebook's tab shuts its kernel down (kernelShutdown in jupyter/overrides.json)."""
    base, token, _root, _log = lab
    ctx, page = open_notebook(browser, base, token, "viewer.ipynb", markdown=False)
    try:
        page.locator(".jp-Notebook .jp-CodeCell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        widget = page.locator(".jp-OutputArea-output .widget-vbox").first
        widget.locator("img").first.wait_for(timeout=KERNEL_TIMEOUT_MS)
        widget.scroll_into_view_if_needed()
        img = widget.locator("img").first.bounding_box()
        slider = widget.locator(".widget-slider").first.bounding_box()
        widget.screenshot(path=str(SHOTS / "lab_05_viewer.png"))
        natural = page.evaluate("el => el.naturalWidth", widget.locator("img").first.element_handle())
        assert img["width"] <= natural + 1, (img, natural)
        # both on one 900 px screen
        top, bottom = min(img["y"], slider["y"]), max(img["y"] + img["height"], slider["y"] + slider["height"])
        assert bottom - top <= VIEWPORT["height"]
        # closing the tab shuts its kernel down (kernelShutdown in jupyter/overrides.json)
        page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").first.click()
        page.wait_for_function("() => !!document.querySelector('.jp-Dialog') "
                               "|| !document.querySelector('.jp-NotebookPanel')",
                               timeout=KERNEL_TIMEOUT_MS)
        if page.locator(".jp-Dialog").count():  # "save your changes?" (the kernel added language_info)
            page.locator(".jp-Dialog button", has_text="Discard").click()
        deadline = time.monotonic() + 60
        while any(k["id"] == page.kernel_id for k in kernels(base, token)):
            assert time.monotonic() < deadline, "the kernel of a closed notebook is still running after 60 s"
            page.wait_for_timeout(250)  # polling interval of the REST check
    finally:
        ctx.close()
