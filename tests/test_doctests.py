"""The examples in tailjax's docstrings run and print what they say (one test per module)."""

import doctest
import importlib
import pkgutil

import pytest

import tailjax

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(tailjax.__path__, "tailjax.") if "._" not in m.name
)


def _examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    return [t for t in tests if t.examples and t.name.startswith(name)]


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_public_modules_have_examples():
    for name in ("tailjax.risk", "tailjax.training", "tailjax.checkpoint", "tailjax.parallel"):
        assert name in WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
