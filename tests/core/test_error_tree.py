"""One error tree: every exception class eocube defines derives from ``EOCubeError``, each name once (issue 22 item 4).

Every module of the package is imported (:func:`pkgutil.walk_packages`) and every exception class
defined in it (its ``__module__`` is that module) is checked. Warnings are not errors and are
left out of the first rule (they go to :mod:`warnings`, never to ``except``); a class that is not
a user-facing error stays outside the tree only when :data:`NOT_USER_ERRORS` names it with the
reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import eocube
from eocube.errors import EOCubeError

NOT_USER_ERRORS = {
    "eocube._redact.RedactedError": "stands in for any exception (a library's, a worker's) whose text held a secret; "
                                    "its message names the original type, which is what the user meets",
    "eocube.cli._common.OneLineUsageError": "click's UsageError printed on one line: click's own exit status 2 and "
                                            "handling of bad options, not an eocube error",
}
"""Exception classes outside the ``EOCubeError`` tree, with the reason."""

def _modules() -> list[str]:
    names = ["eocube"]
    for info in pkgutil.walk_packages(eocube.__path__, prefix="eocube."):
        if info.name != "eocube.__main__":
            names.append(info.name)
    return names


def _exception_classes() -> list[type[BaseException]]:
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_walk_sees_the_package_and_its_errors():
    classes = {_qualname(c) for c in _exception_classes()}
    assert {"eocube.errors.EOCubeError", "eocube.fill._errors.FillError", "eocube.models._errors.ModelError",
            "eocube.learn.errors.LearnError"} <= classes
    assert len(classes) >= 40


def test_every_exception_class_of_eocube_is_an_eocube_error_or_says_why_not():
    outside = sorted(_qualname(c) for c in _exception_classes()
                     if not issubclass(c, (EOCubeError, Warning)) and _qualname(c) not in NOT_USER_ERRORS)
    assert not outside, f"exception classes outside the EOCubeError tree (derive them from it): {outside}"
    stale = sorted(set(NOT_USER_ERRORS) - {_qualname(c) for c in _exception_classes()})
    assert not stale, f"NOT_USER_ERRORS names classes that no longer exist: {stale}"


def test_no_two_public_exception_classes_share_a_name():
    by_name = defaultdict(list)
    for cls in _exception_classes():
        if not cls.__name__.startswith("_"):
            by_name[cls.__name__].append(_qualname(cls))
    shared = {name: where for name, where in by_name.items() if len(where) > 1}
    assert not shared, f"one name, several classes (keep one and import it): {shared}"


def test_the_grid_error_is_exported_at_the_top_like_the_other_errors():
    import eocube.errors
    import eocube.models
    import eocube.stac
    from eocube import GridError

    assert GridError is eocube.errors.GridError is eocube.models.GridError is eocube.stac.GridError
    assert "GridError" in eocube.__all__ and issubclass(GridError, (EOCubeError, ValueError))


def test_every_error_of_eocube_errors_is_exported_at_the_top():
    import inspect

    import eocube
    import eocube.errors

    errors = {name for name, obj in vars(eocube.errors).items()
              if inspect.isclass(obj) and issubclass(obj, eocube.errors.EOCubeError)
              and obj.__module__ == "eocube.errors"}
    assert {"ClusterError", "UnknownSampleError", "GridError"} <= errors
    missing = sorted(name for name in errors if getattr(eocube, name, None) is not getattr(eocube.errors, name)
                     or name not in eocube.__all__)
    assert not missing, f"eocube.errors classes not exported by eocube: {missing}"
