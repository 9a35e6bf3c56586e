#!/usr/bin/env bash
# One entry point for the project's chores. Every task is idempotent.
#   ./tasks.sh book    set up .venv, generate the sample, build the executed book
#                      (--student: without solutions, into _build/student)
#   ./tasks.sh test    set up, ruff, mypy, then every test (unit, doctests, book build, browser)
#   ./tasks.sh lab     set up, generate the chapter notebooks, start JupyterLab on 127.0.0.1
#                      (LAB_PORT=8888 by default; extra arguments go to jupyter-lab)
#   ./tasks.sh pdf     build the book, then print it to _build/pdf/book.pdf with Chromium
#                      (--student: without solutions, to _build/pdf/book-student.pdf;
#                       --no-build: print the existing HTML build as it is)
#   ./tasks.sh bench   set up, then run the benchmarks and write docs/benchmarks.md
#   ./tasks.sh setup   only the set-up (system packages, .venv, sample)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "tasks.sh: need root (or sudo) to run: $*" >&2; return 1; fi
}

system_packages() {
  # Debian packages: a venv-capable Python, the chromium the browser tests drive and the PDF is
  # printed with, poppler-utils (pdftoppm, pdftotext) to look at the PDF's pages, Orthanc (chapter 0).
  local missing=()
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "== installing Debian packages: ${missing[*]}"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-liberation >/dev/null
    else
      echo "tasks.sh: please install ${missing[*]} with your package manager" >&2
    fi
  fi
  pacs_packages
}

pacs_packages() {
  # Orthanc + its DICOMweb plugin, the PACS of chapter 0. Optional: if they cannot be
  # installed, chapter 0 says so and skips its PACS cells; nothing else depends on them.
  [ -x /usr/sbin/Orthanc ] && [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "tasks.sh: install orthanc and orthanc-dicomweb for chapter 0" >&2; return 0; }
  echo "== installing Debian packages: orthanc orthanc-dicomweb"
  { as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null; } ||
    echo "tasks.sh: could not install orthanc/orthanc-dicomweb: chapter 0 will skip its PACS cells" >&2
}

python_env() {
  [ -x "$PY" ] || { echo "== creating .venv"; python3 -m venv "$VENV"; }
  local want have
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  have=$(cat "$VENV/.installed" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "== installing pinned Python packages (requirements.txt)"
    "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
    "$PY" -m pip install -q --disable-pip-version-check --no-deps -e .
    echo "$want" > "$VENV/.installed"
  fi
}

sample() { "$PY" -m helpers.sample data/sample; }

setup() { system_packages; python_env; sample; }

book() {
  setup
  local where=(--path-output .) out=_build/html
  if [ "${1:-}" = "--student" ]; then
    shift; export BOOK_STUDENT=1
    where=(--path-output _build/student); out=_build/student/_build/html
    echo "== student build: solutions removed"
  fi
  echo "== building the book (every chapter executed)"
  "$VENV/bin/jupyter-book" build . "${where[@]}" "$@"
  echo
  echo "The book is in $ROOT/$out/index.html"
  echo "Serve it:  $PY -m http.server --bind 127.0.0.1 --directory $out 8000   then open http://127.0.0.1:8000"
}

lab() {
  setup
  if ! "$PY" -c 'import jupyterlab' >/dev/null 2>&1; then
    echo "tasks.sh lab: JupyterLab is not installed in .venv: run ./tasks.sh setup (it installs the pinned jupyterlab from requirements.txt)" >&2
    exit 1
  fi
  "$PY" -m helpers.book.notebooks build              # notebooks/<chapter>.ipynb from book/*.md (solutions collapsed)
  "$PY" -m helpers.book.notebooks install-config >/dev/null   # jupyter/: kernel culling, .md opens as a notebook
  local port token root_flag=()
  port=$("$PY" - "${LAB_PORT:-8888}" <<'PYEOF'
import socket, sys
want = int(sys.argv[1])
for port in range(want, want + 50):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    sys.exit(f"tasks.sh lab: ports {want}-{want + 49} on 127.0.0.1 are all in use; set LAB_PORT to a free one")
PYEOF
)
  token=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
  [ "$(id -u)" = 0 ] && root_flag=(--allow-root)
  echo "== JupyterLab (Ctrl-C stops it). Open:"
  echo "   http://127.0.0.1:$port/lab/tree/notebooks/01_load.ipynb?token=$token"
  exec "$VENV/bin/jupyter-lab" --no-browser --ip=127.0.0.1 --port="$port" --ServerApp.port_retries=0 \
    --IdentityProvider.token="$token" --ServerApp.root_dir="$ROOT" "${root_flag[@]}" "$@"
}

pdf() {
  local build=1 student=() html=_build/html out=_build/pdf/book.pdf
  local args=()
  for a in "$@"; do
    case "$a" in
      --student) student=(--student); html=_build/student/_build/html; out=_build/pdf/book-student.pdf ;;
      --no-build) build=0 ;;
      *) args+=("$a") ;;
    esac
  done
  if [ "$build" = 1 ]; then book "${student[@]}" "${args[@]}"; else setup; fi
  echo "== printing the book to $out (Chromium, one page at a time)"
  "$PY" -m helpers.book.pdfbook "$html" "$out" "${student[@]}"
}

run_tests() {
  setup
  echo "== ruff (pyflakes, pycodestyle, import order, bugbear, complexity; settings in pyproject.toml)"
  "$VENV/bin/ruff" check helpers bench tests
  echo "== mypy (types in helpers/; settings in pyproject.toml)"
  "$VENV/bin/mypy"
  "$PY" -m pytest "$@"
}

bench() { setup; "$PY" -m bench "$@"; }

task=${1:-help}; shift || true
case "$task" in
  book) book "$@" ;;
  test) run_tests "$@" ;;
  lab) lab "$@" ;;
  pdf) pdf "$@" ;;
  bench) bench "$@" ;;
  setup) setup ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
