"""The set-up stays honest: Binder's environment.yml pins what requirements.txt locks."""
import re
import tomllib

import yaml
from conftest import REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _lock():
    return _pins((REPO / "requirements.txt").read_text().splitlines())


def _binder():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return env, pip


class TestEnvironmentInStep:
    def test_every_binder_pin_matches_the_lock(self):
        lock = _lock()
        _, pip = _binder()
        binder = _pins(pip)
        assert binder, "environment.yml has no pinned pip packages"
        wrong = {n: (v, lock.get(n)) for n, v in binder.items() if lock.get(n) != v}
        assert not wrong, f"environment.yml pins differ from requirements.txt (binder, lock): {wrong}"

    def test_every_direct_dependency_is_pinned_in_both(self):
        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        names = {_norm(re.split(r"[<>=!~\[]", d)[0]) for d in deps}
        lock = _lock()
        binder = _pins(_binder()[1])
        assert not names - lock.keys(), f"not locked in requirements.txt: {sorted(names - lock.keys())}"
        assert not names - binder.keys(), f"not pinned in environment.yml: {sorted(names - binder.keys())}"

    def test_python_version_agrees(self):
        env, _ = _binder()
        py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
        requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
        low = requires.removeprefix(">=")
        assert py.split("=")[-1] >= low, f"environment.yml has {py}, pyproject requires {requires}"

    def test_lock_is_installed(self):
        from importlib.metadata import PackageNotFoundError, version

        lock = _lock()
        off = {}
        for name in ("numpy", "pydicom", "scipy", "scikit-image", "plotly", "jupyter-book", "highdicom", "zarr"):
            try:
                have = version(name)
            except PackageNotFoundError:
                have = None
            if have != lock[name]:
                off[name] = (have, lock[name])
        assert not off, (f"installed versions differ from requirements.txt (installed, locked): {off}; "
                         "run ./tasks.sh setup")
