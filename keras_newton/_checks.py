"""Argument checks shared by the library: one convention for every constructor and loader.

Every check takes the argument's name first and its value second,
``check_positive_float("tau", tau)``, and returns the value as a plain Python ``float``,
``int`` or ``bool`` (so that a ``get_config`` holding it stays JSON-serializable). A
mistake raises

- ``TypeError`` when the value has the wrong type (a string, ``None`` where ``None`` is not
  allowed, a float where an integer is expected, a ``bool`` where a number is expected);
- ``ValueError`` when it has the right type but a wrong value (negative, zero, NaN,
  infinite, below a minimum);

with a message ``"<name> must be <what is expected>[ (<note>)]; received <value>[ of type
<type>]."`` (the type for a ``TypeError``).

Numbers: any `numbers.Real` (a float check) or `numbers.Integral` (an integer check) is
accepted, numpy scalars included (``np.float32(0.1)``, ``np.int64(3)``); ``bool`` and
``np.bool_`` are refused as numbers. A float check also takes integers. A numpy float of
less than double precision (``np.float16``, ``np.float32``) is read as its shortest
decimal representation, so ``np.float32(0.1)`` gives ``0.1``, the same value as the
Python ``0.1``, rather than its exact binary value ``0.10000000149011612``.

This module is private: it is the library's own, and its names are not part of the API.
"""

import math
import numbers

import numpy as np

__all__ = [
    "check_bool",
    "check_int",
    "check_non_negative_float",
    "check_non_negative_int",
    "check_positive_float",
    "check_positive_int",
]


def _what(name, expected, note):
    return f"{name} must be {expected}" + ("" if note is None else f" ({note})")


def _type_error(name, value, expected, note):
    return TypeError(f"{_what(name, expected, note)}; received {value!r} of type "
                     f"{type(value).__name__}.")


def _value_error(name, value, expected, note):
    return ValueError(f"{_what(name, expected, note)}; received {value!r}.")


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _to_float(value):
    if isinstance(value, np.floating) and np.finfo(value.dtype).bits < 64:
        return float(str(value))  # the float32 0.1 is the 0.1 that was meant
    return float(value)


def _check_float(name, value, expected, positive, allow_none, note):
    if allow_none:
        if value is None:
            return None
        expected = f"{expected} or None"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise _type_error(name, value, expected, note)
    result = _to_float(value)
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        raise _value_error(name, value, expected, note)
    return result


def check_positive_float(name, value, *, allow_none=False, note=None):
    """``float(value)`` for a finite real number ``> 0`` (or ``None`` if ``allow_none``).

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        allow_none: also accept (and return) ``None``.
        note: optional words in parentheses after what is expected, e.g.
            ``"items per set"``.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` included).
        ValueError: ``value`` is not finite or not ``> 0``.
    """
    return _check_float(name, value, "a positive finite number", True, allow_none, note)


def check_non_negative_float(name, value, *, allow_none=False, note=None):
    """``float(value)`` for a finite real number ``>= 0`` (or ``None`` if ``allow_none``).

    Raises:
        TypeError: ``value`` is not a real number (``bool`` included).
        ValueError: ``value`` is not finite or is negative.
    """
    return _check_float(name, value, "a non-negative finite number", False, allow_none, note)


def check_int(name, value, minimum=None, *, allow_none=False, note=None):
    """``int(value)`` for an integer ``>= minimum`` (any integer if ``minimum`` is None).

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: the smallest accepted value, or ``None`` for no bound.
        allow_none: also accept (and return) ``None``.
        note: optional words in parentheses after what is expected.

    Raises:
        TypeError: ``value`` is not an integer (a float such as ``2.0`` and ``bool``
            included).
        ValueError: ``value < minimum``.
    """
    if minimum is None:
        expected = "an integer"
    elif minimum == 0:
        expected = "a non-negative integer"
    elif minimum == 1:
        expected = "a positive integer"
    else:
        expected = f"an integer >= {minimum}"
    if allow_none:
        if value is None:
            return None
        expected = f"{expected} or None"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise _type_error(name, value, expected, note)
    result = int(value)
    if minimum is not None and result < minimum:
        raise _value_error(name, value, expected, note)
    return result


def check_positive_int(name, value, *, allow_none=False, note=None):
    """``int(value)`` for an integer ``>= 1``; see `check_int`."""
    return check_int(name, value, 1, allow_none=allow_none, note=note)


def check_non_negative_int(name, value, *, allow_none=False, note=None):
    """``int(value)`` for an integer ``>= 0``; see `check_int`."""
    return check_int(name, value, 0, allow_none=allow_none, note=note)


def check_bool(name, value):
    """``bool(value)`` for ``True``, ``False`` or a numpy bool; else raises TypeError."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False; received {value!r} of type "
                        f"{type(value).__name__}.")
    return bool(value)
