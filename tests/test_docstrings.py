"""Every public name passes numpydoc's docstring validation (a few checks turned off)."""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

from tests.test_docs import PUBLIC  # noqa: E402

#: numpydoc checks turned off, and why:
#: ES01 (extended summary), SA01 (See Also), EX01 (Examples): wanted where they help a
#: reader, not on every helper; SS05 (summary starts with an infinitive verb): noun-phrase
#: summaries ("Class probabilities, ...") are scikit-learn's style for what returns a
#: value; RT02 (return type only): we name return values, ``proba : ndarray ...``, as
#: scikit-learn does.
IGNORED = {"ES01", "SA01", "EX01", "SS05", "RT02"}


def _public_names():
    names = []
    for module in sorted(PUBLIC):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants are documented by their ``#:`` comments
            names.append(f"{module}.{name}")
            if inspect.isclass(obj):
                names += [
                    f"{module}.{name}.{attr}"
                    for attr, value in vars(obj).items()
                    if not attr.startswith("_")
                    and (inspect.isfunction(value) or isinstance(value, property))
                ]
    return names


def test_there_are_public_names():
    names = _public_names()
    assert "skpeal.estimator.CLIPAdapterClassifier.fit" in names and len(names) > 50


@pytest.mark.parametrize("name", _public_names())
def test_numpydoc_validation(name):
    errors = [
        f"{code}: {msg}"
        for code, msg in numpydoc_validate.validate(name)["errors"]
        if code not in IGNORED
    ]
    assert not errors, "\n".join(errors)
