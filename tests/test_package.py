"""The package as a whole: every public function says what it takes and what it gives.

mypy's ``disallow_incomplete_defs`` (``pyproject.toml``) refuses a function that annotates
some of its parameters but not all; it lets through a public function with no annotations
at all.  This test closes that gap by walking the public names of every module.
"""
import importlib
import inspect
import pkgutil
import types

import pytest

import helpers


def _module_names() -> list[str]:
    names = ["helpers"]
    for info in pkgutil.walk_packages(helpers.__path__, prefix="helpers."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):  # private modules and __main__
            continue
        names.append(info.name)
    return sorted(names)


def _public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or else every public name the module itself defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, obj in vars(module).items()
            if not n.startswith("_") and getattr(obj, "__module__", None) == module.__name__]


def _callables(module: types.ModuleType):
    """(qualified name, function) for each public function, and each public method of a public class.

    A class's methods are those it defines itself (inherited ones belong to their own class), with
    properties read through their getter; ``__init__`` counts, the other dunders do not.
    """
    for name in _public_names(module):
        obj = getattr(module, name)
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:  # a re-export is checked at home
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member) and member.__module__ == module.__name__:
                    yield f"{module.__name__}.{name}.{attr}", member


def _missing(func) -> list[str]:
    """The parameters (and ``return``) of ``func`` that carry no annotation; ``self``/``cls`` excepted."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty and func.__name__ != "__init__":
        missing.append("return")
    return missing


@pytest.mark.parametrize("module_name", _module_names())
def test_public_functions_fully_annotated(module_name):
    module = importlib.import_module(module_name)
    offenders = [f"{qualname}: {', '.join(missing)}"
                 for qualname, func in _callables(module) if (missing := _missing(func))]
    assert not offenders, (f"{len(offenders)} public functions of {module_name} are not fully annotated "
                           "(parameter names, or 'return'):\n  " + "\n  ".join(offenders))


def test_walk_finds_the_modules():
    # the walk above must see the subpackages, or it would pass by finding nothing
    names = _module_names()
    assert {"helpers.io", "helpers.book.checks", "helpers.testing.factory"} <= set(names)
    assert not [n for n in names if n.rsplit(".", 1)[-1].startswith("_")]
