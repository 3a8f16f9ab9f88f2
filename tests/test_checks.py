"""Argument checks: one convention across the library (keras_newton/_checks.py).

Specification:
(a) every check takes the name first and returns a plain Python ``float``/``int``/``bool``
    (``type(result) is float`` etc.), for Python numbers and numpy scalars alike; a
    float32/float16 scalar is read as its shortest decimal (``np.float32(0.1)`` -> ``0.1``);
(b) a wrong type raises ``TypeError``, a wrong value ``ValueError``; the message is
    ``"<name> must be <expected>[ (<note>)]; received <value>[ of type <type>]."``;
(c) ``bool``/``np.bool_`` are not numbers; a float (even ``2.0``) is not an integer;
(d) the public constructors (NewtonLoss tikhonov, NeuralSort/SoftSort tau, DiffSort
    steepness, RelaxedBellmanFord beta, FenchelYoungLoss/StochasticSmoothingLoss samples and
    sigma) accept numpy scalars with the same, JSON-serializable ``get_config`` as Python
    values, and give TypeError for ``bool`` and ``str``, ValueError for negative values,
    with the argument's name in the message.
"""

import json
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_newton import _checks

POSITIVE_FLOAT = "a positive finite number"
NON_NEGATIVE_FLOAT = "a non-negative finite number"


# (a) accepted values -> plain Python types ---------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.5, 0.5), (3, 3.0), (np.float32(0.1), 0.1), (np.float16(0.25), 0.25),
    (np.float64(0.1), 0.1), (np.int64(3), 3.0), (np.int32(2), 2.0), (1e-300, 1e-300),
])
def test_positive_float_accepts_numbers_and_returns_python_float(value, expected):
    result = _checks.check_positive_float("tau", value)
    assert type(result) is float and result == expected


@pytest.mark.parametrize("value, expected", [
    (0, 0.0), (0.0, 0.0), (np.float32(0.0), 0.0), (np.float32(1e-3), 1e-3), (np.uint8(7), 7.0),
])
def test_non_negative_float_accepts_zero_and_returns_python_float(value, expected):
    result = _checks.check_non_negative_float("tikhonov", value)
    assert type(result) is float and result == expected


def test_float32_is_read_as_its_shortest_decimal():
    # The same value as the Python literal, not the float32's binary 0.10000000149011612.
    assert _checks.check_positive_float("sigma", np.float32(0.1)) == 0.1
    assert float(np.float32(0.1)) != 0.1
    assert _checks.check_positive_float("sigma", np.float32(3.3)) == 3.3


@pytest.mark.parametrize("check, value, expected", [
    (_checks.check_positive_int, 1, 1), (_checks.check_positive_int, np.int64(3), 3),
    (_checks.check_positive_int, np.uint16(5), 5),
    (_checks.check_non_negative_int, 0, 0), (_checks.check_non_negative_int, np.int8(0), 0),
])
def test_int_checks_accept_integers_and_return_python_int(check, value, expected):
    result = check("samples", value)
    assert type(result) is int and result == expected


def test_check_int_minimum_and_none():
    assert _checks.check_int("n", np.int32(2), 2) == 2
    assert _checks.check_int("offset", -7) == -7
    assert _checks.check_int("first", None, 2, allow_none=True) is None
    assert _checks.check_positive_int("iterations", None, allow_none=True) is None
    assert _checks.check_positive_float("t_conorm_p", None, allow_none=True) is None
    assert _checks.check_non_negative_float("tol", None, allow_none=True) is None


def test_check_bool():
    assert _checks.check_bool("flag", True) is True
    assert _checks.check_bool("flag", np.bool_(False)) is False
    with pytest.raises(TypeError, match=re.escape(
            "flag must be True or False; received 1 of type int.")):
        _checks.check_bool("flag", 1)
    with pytest.raises(TypeError, match="flag must be True or False; received 'yes'"):
        _checks.check_bool("flag", "yes")


# (b), (c) rejections: exception type and full message ------------------------------------

@pytest.mark.parametrize("value, type_name", [
    ("1", "str"), (None, "NoneType"), (True, "bool"), (np.bool_(True), "bool"),
    ([1.0], "list"), (1 + 2j, "complex"), (np.array([0.5]), "ndarray"),
])
def test_float_checks_refuse_wrong_types_with_type_error(value, type_name):
    for check, expected in [(_checks.check_positive_float, POSITIVE_FLOAT),
                            (_checks.check_non_negative_float, NON_NEGATIVE_FLOAT)]:
        with pytest.raises(TypeError) as info:
            check("beta", value)
        assert str(info.value).startswith(f"beta must be {expected}; received {value!r}")
        assert str(info.value).endswith(f" of type {type(value).__name__}.")
        assert type_name in str(info.value)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, np.float32(-2.0), np.int64(-3),
                                   float("nan"), float("inf"), -float("inf"),
                                   np.float32("nan"), np.float64("inf")])
def test_positive_float_refuses_non_positive_and_non_finite(value):
    with pytest.raises(ValueError) as info:
        _checks.check_positive_float("sigma", value)
    assert str(info.value) == f"sigma must be {POSITIVE_FLOAT}; received {value!r}."


@pytest.mark.parametrize("value", [-1, -1e-12, np.float32(-0.5), float("nan"),
                                   float("inf")])
def test_non_negative_float_refuses_negative_and_non_finite(value):
    with pytest.raises(ValueError) as info:
        _checks.check_non_negative_float("tikhonov", value)
    assert str(info.value) == f"tikhonov must be {NON_NEGATIVE_FLOAT}; received {value!r}."


@pytest.mark.parametrize("value", [2.0, 2.5, np.float32(2.0), "2", None, True, False,
                                   np.bool_(True)])
def test_int_checks_refuse_non_integers_with_type_error(value):
    with pytest.raises(TypeError) as info:
        _checks.check_positive_int("samples", value)
    assert str(info.value) == (f"samples must be a positive integer; received {value!r} of "
                               f"type {type(value).__name__}.")


@pytest.mark.parametrize("check, minimum, value, expected", [
    (_checks.check_positive_int, None, 0, "a positive integer"),
    (_checks.check_positive_int, None, np.int64(-2), "a positive integer"),
    (_checks.check_non_negative_int, None, -1, "a non-negative integer"),
    (_checks.check_int, 2, 1, "an integer >= 2"),
    (_checks.check_int, 2, np.int32(0), "an integer >= 2"),
])
def test_int_checks_refuse_small_values_with_value_error(check, minimum, value, expected):
    args = ("grid", value) if minimum is None else ("grid", value, minimum)
    with pytest.raises(ValueError) as info:
        check(*args)
    assert str(info.value) == f"grid must be {expected}; received {value!r}."


def test_allow_none_and_note_are_in_the_messages():
    with pytest.raises(ValueError, match=re.escape(
            "iterations must be a positive integer or None; received 0.")):
        _checks.check_positive_int("iterations", 0, allow_none=True)
    with pytest.raises(TypeError, match=re.escape(
            "iterations must be a positive integer or None; received 2.5 of type float.")):
        _checks.check_positive_int("iterations", 2.5, allow_none=True)
    with pytest.raises(ValueError, match=re.escape(
            "n must be an integer >= 2 (items per set); received 1.")):
        _checks.check_int("n", 1, 2, note="items per set")
    with pytest.raises(TypeError, match=re.escape(
            "tikhonov must be a non-negative finite number (lambda in (C + lambda I)); "
            "received None of type NoneType.")):
        _checks.check_non_negative_float("tikhonov", None, note="lambda in (C + lambda I)")


# (d) the public constructors ------------------------------------------------------------

@keras.saving.register_keras_serializable(package="keras_newton_test_checks")
def _step(y):
    return ops.cast(y > 0, y.dtype)


@keras.saving.register_keras_serializable(package="keras_newton_test_checks")
def _argmin_one_hot(costs):
    return ops.one_hot(ops.argmin(costs, axis=-1), costs.shape[-1], dtype=costs.dtype)


def _constructors():
    import keras_newton as kn
    from keras_newton import layers
    from keras_newton.stochastic import FenchelYoungLoss
    from keras_newton.stochastic import StochasticSmoothingLoss

    return {
        "NewtonLoss": lambda **kw: kn.NewtonLoss("mse", **kw),
        "NeuralSort": layers.NeuralSort,
        "SoftSort": layers.SoftSort,
        "DiffSort": layers.DiffSort,
        "RelaxedBellmanFord": layers.RelaxedBellmanFord,
        "FenchelYoungLoss": lambda **kw: FenchelYoungLoss(_argmin_one_hot, **kw),
        "StochasticSmoothingLoss": lambda **kw: StochasticSmoothingLoss(_step, **kw),
    }


# (constructor, argument, Python value, numpy value, a negative value)
CASES = [
    ("NewtonLoss", "tikhonov", 0.1, np.float32(0.1), -1.0),
    ("NewtonLoss", "tikhonov", 2.0, np.float64(2.0), np.float32(-0.5)),
    ("NeuralSort", "tau", 0.3, np.float32(0.3), -1.0),
    ("SoftSort", "tau", 0.7, np.float32(0.7), -0.1),
    ("DiffSort", "steepness", 10.0, np.float32(10.0), -3.0),
    ("DiffSort", "steepness", 12, np.int64(12), np.int64(-1)),
    ("RelaxedBellmanFord", "beta", 10.0, np.float32(10.0), -10.0),
    ("FenchelYoungLoss", "samples", 3, np.int64(3), -3),
    ("FenchelYoungLoss", "sigma", 0.1, np.float32(0.1), -0.1),
    ("StochasticSmoothingLoss", "samples", 5, np.int32(5), np.int64(-1)),
    ("StochasticSmoothingLoss", "sigma", 0.5, np.float64(0.5), -1.0),
]


def _ids(case):
    return f"{case[0]}-{case[1]}-{type(case[3]).__name__}"


def _plain_config(obj):
    config = obj.get_config()
    json.dumps(config)  # JSON-serializable: no numpy scalar slipped through
    return config


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_constructors_accept_numpy_scalars_with_the_same_config(case):
    name, arg, python_value, numpy_value, _ = case
    make = _constructors()[name]
    from_python = make(name="checked", **{arg: python_value})  # a fixed name: layers
    from_numpy = make(name="checked", **{arg: numpy_value})    # are otherwise numbered
    assert type(getattr(from_numpy, arg)) is type(getattr(from_python, arg))
    assert getattr(from_numpy, arg) == getattr(from_python, arg)
    config = _plain_config(from_numpy)
    assert config == _plain_config(from_python)
    assert type(config[arg]) in (int, float)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("bad", [True, False, "0.1", "3"], ids=repr)
def test_constructors_refuse_bool_and_str_with_type_error(case, bad):
    name, arg = case[:2]
    with pytest.raises(TypeError, match=rf"^{arg} must be .*; received {re.escape(repr(bad))} "
                                        rf"of type {type(bad).__name__}\.$"):
        _constructors()[name](**{arg: bad})


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_constructors_refuse_negative_values_with_value_error(case):
    name, arg, negative = case[0], case[1], case[4]
    with pytest.raises(ValueError, match=rf"^{arg} must be .*; received "
                                         rf"{re.escape(repr(negative))}\.$"):
        _constructors()[name](**{arg: negative})


# The other call sites: numpy integers accepted, a float or bool where an integer is
# expected is a TypeError, a too-small value a ValueError; each message names the argument.

def _call_sites():
    from keras_newton.datasets import four_digit
    from keras_newton.datasets.warcraft import generate_warcraft
    from keras_newton.datasets.warcraft import load_warcraft
    from keras_newton.metrics import ExactMatchAccuracy
    from keras_newton.metrics import OptimalCostMatch
    from keras_newton.metrics import path_metrics
    from keras_newton.models import comb_resnet18
    from keras_newton.models import mlp
    from keras_newton.models import multi_digit_cnn
    from keras_newton.paths import solve_shortest_paths
    from keras_newton.sorting.networks import sorting_plan
    from keras_newton.tikhonov import to_per_sample

    costs = np.ones((1, 2, 2), np.float32)
    return {
        "first": lambda v: ExactMatchAccuracy(first=v),
        "tolerance": lambda v: OptimalCostMatch(tolerance=v),
        "path_metrics tolerance": lambda v: path_metrics(costs, costs, costs, tolerance=v),
        "path_metrics batch_size": lambda v: path_metrics(costs, costs, costs, batch_size=v),
        "batch_size": lambda v: solve_shortest_paths(costs, batch_size=v),
        "to_per_sample batch_size": lambda v: to_per_sample(0.1, "hessian", v),
        "n": lambda v: sorting_plan("odd_even", v),
        "sample_set_indices n": lambda v: four_digit.sample_set_indices(10, 2, v, 0),
        "multi_digit_cnn n": lambda v: multi_digit_cnn(v),
        "width": lambda v: mlp(v),
        "depth": lambda v: mlp(10, depth=v),
        "grid": lambda v: comb_resnet18(grid=v),
        "load_warcraft grid": lambda v: load_warcraft("no_such_folder", grid=v),
        "load_warcraft batch_size": lambda v: load_warcraft("no_such_folder", batch_size=v),
        "n_train": lambda v: generate_warcraft("unused", n_train=v),
        "n_val": lambda v: generate_warcraft("unused", n_val=v),
        "generate_warcraft grid": lambda v: generate_warcraft("unused", grid=v),
        "seed": lambda v: generate_warcraft("unused", seed=v),
    }


# (call site, a value of the wrong type, a value too small or negative)
SITES = [
    ("first", 2.0, 1), ("tolerance", "0", -1e-3), ("path_metrics tolerance", None, -1.0),
    ("path_metrics batch_size", 10.0, 0), ("batch_size", True, np.int64(0)),
    ("to_per_sample batch_size", 2.0, 0), ("n", 4.0, np.int64(1)),
    ("sample_set_indices n", np.float32(3.0), 1), ("multi_digit_cnn n", "3", 1),
    ("width", 10.5, 0), ("depth", np.bool_(True), -1), ("grid", 12.0, 0),
    ("load_warcraft grid", "12", 0), ("load_warcraft batch_size", 7.0, 0),
    ("n_train", 1.0, 0), ("n_val", "1", -1), ("generate_warcraft grid", 12.0, 1),
    ("seed", 0.0, -1),
]


@pytest.mark.parametrize("site, wrong_type, too_small", SITES, ids=[s[0] for s in SITES])
def test_call_sites_follow_the_convention(site, wrong_type, too_small):
    arg = site.split()[-1]
    call = _call_sites()[site]
    with pytest.raises(TypeError, match=rf"^{arg} must be .*; received "
                                        rf"{re.escape(repr(wrong_type))} of type "):
        call(wrong_type)
    with pytest.raises(ValueError, match=rf"^{arg} must be .*; received "
                                         rf"{re.escape(repr(too_small))}\.$"):
        call(too_small)


def test_call_sites_accept_numpy_scalars():
    from keras_newton.datasets import four_digit
    from keras_newton.metrics import ExactMatchAccuracy
    from keras_newton.metrics import OptimalCostMatch
    from keras_newton.sorting.networks import sorting_plan
    from keras_newton.tikhonov import to_per_sample

    metric = ExactMatchAccuracy(first=np.int64(3))
    assert type(metric.first) is int and metric.first == 3
    json.dumps(metric.get_config())
    metric = OptimalCostMatch(tolerance=np.float32(1e-4))
    assert type(metric.tolerance) is float and metric.tolerance == 1e-4
    assert sorting_plan("bitonic", np.int32(5)).n == 5
    assert four_digit.sample_set_indices(10, 2, np.int64(3), 0).shape == (2, 3, 4)
    result = to_per_sample(np.float32(0.5), "fisher", np.int16(4))
    assert type(result) is float and result == 8.0
