"""skpeal._validation: the one set of argument checks every module uses."""

import numpy as np
import pytest

from skpeal._validation import (
    InvalidParameterError,
    as_generator,
    check_bool,
    check_choice,
    check_int,
    check_n_instances,
    check_proba,
    check_real,
    derive_seed,
    label_columns,
    seed_from,
)


def test_errors_are_value_and_type_errors():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: check_choice("mode", "x", ("a", "b")),
         r"mode must be one of \('a', 'b'\), got 'x'"),
        (lambda: check_bool("flag", 1), "flag must be a bool, got 1"),
        (lambda: check_int("n", 1.0, 1), r"n must be an integer >= 1, got 1.0"),
        (lambda: check_int("n", True, 0), "n must be an integer >= 0, got True"),
        (lambda: check_int("n", 0, 1, 5), r"n must be an integer in \[1, 5\], got 0"),
        (lambda: check_int("n", 9, high=5), "n must be an integer <= 5, got 9"),
        (lambda: check_real("lr", 0.0, 0.0, closed="right"), r"lr must be a number in \(0, inf\]"),
        (lambda: check_real("p", 1.0, 0.0, 1.0, closed="left"), r"p must be a number in \[0, 1\)"),
        (lambda: check_real("p", float("nan"), 0.0, 1.0), "p must be a number"),
        (lambda: check_real("p", "0.5", 0.0, 1.0), "p must be a number"),
        (lambda: check_n_instances(0, 5), r"n_instances must be in \[1, 5\]"),
        (lambda: check_n_instances(1, 0), "X_pool is empty"),
        (lambda: check_n_instances(2.0, 5), "n_instances must be an integer"),
        (lambda: seed_from("x"), "random_state"),
        (lambda: as_generator("x"), "random_state"),
    ],
)
def test_messages_name_the_parameter_and_the_value(call, match):
    with pytest.raises(InvalidParameterError, match=match):
        call()


def test_valid_values_are_normalised():
    assert check_int("n", np.int64(3), 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    assert check_real("x", np.float32(0.5), 0.0, 1.0) == 0.5
    assert check_bool("b", np.bool_(True)) is True
    assert check_real("p", 0.0, 0.0, 1.0, closed="left") == 0.0
    assert check_choice("c", None, (None, "a")) is None


def test_check_proba_one_set_of_messages():
    with pytest.raises(ValueError, match="at least one row"):
        check_proba(np.zeros((0, 2)), min_samples=1)
    assert check_proba(np.zeros((0, 2))).shape == (0, 2)
    p = check_proba([[1.00005, -0.00005]])
    assert p.dtype == np.float64 and p.min() == 0.0  # round-off clipped
    with pytest.raises(ValueError, match="p rows must sum to 1"):
        check_proba([[0.2, 0.2]], name="p")


def test_label_columns():
    assert label_columns(["b", "a", "b"], np.array(["a", "b"])).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"y contains labels not in classes: 'c'"):
        label_columns(["c"], np.array(["a", "b"]))
    with pytest.raises(ValueError, match="duplicates"):
        label_columns(["a"], np.array(["a", "a"]))


def test_seeds():
    assert seed_from(5) == 5
    assert seed_from(np.random.default_rng(0)) == seed_from(np.random.default_rng(0))
    assert seed_from(np.random.RandomState(0)) == seed_from(np.random.RandomState(0))
    assert seed_from(None) != seed_from(None)
    # derived seeds: stable values (a run resumed in another process needs the same seeds)
    assert derive_seed("fit", 0, 3) == derive_seed("fit", 0, 3)
    assert derive_seed("fit", 0, 3) != derive_seed("fit", 0, 4)
    assert derive_seed("init", 0) == 1916474366  # the value skpeal 0.1.0 derived
    assert 0 <= derive_seed("x") < 2**32
