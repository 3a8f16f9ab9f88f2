"""Sorting networks for any ``n``: odd-even transposition and bitonic.

A sorting network is a fixed sequence of layers of comparators; a comparator of wires
``(u, v)`` writes the smaller of its two values to wire ``u`` and the larger to ``v``
(Knuth, TAOCP vol. 3, 5.3.4). Differentiable sorting networks (Petersen et al., ICML
2021) replace each comparator by a soft conditional swap (`distributions.py`).

- Odd-even transposition network: ``n`` layers; layer ``l`` compares the neighbours
  ``(i, i + 1)`` for ``i = l mod 2, l mod 2 + 2, ...``. Sorts any ``n``.
- Bitonic network (Batcher, 1968): for ``N = 2^k`` wires, ``k (k + 1) / 2`` layers. For
  ``n`` that is not a power of two this is the layout of the ``diffsort`` package
  (Petersen, github.com/Felix-Petersen/diffsort, ``networks.bitonic_network``): the *top*
  ``N - n`` wires are discarded and value ``i`` sits on wire ``N - n + i``. A comparator
  of two discarded wires is dropped; one touching exactly one discarded wire leaves the
  real wire where it is (diffsort writes it as an identity map: the wire compared with
  itself, ``alpha = f(0) = 1/2``, soft min and soft max both sent back with weight
  ``1/2``, which returns the value and its permutation row unchanged). The network
  still sorts every input (checked by the 0-1 principle in the tests), and its
  relaxation equals diffsort's for every ``n``; padding ``+inf`` wires at the bottom
  instead would also sort but relax differently. (diffsort takes ``alpha = f(b - a)``
  with ``a`` the upper wire and, for a descending comparator, sends the soft min to ``b``;
  here that comparator is ``(b, a)`` with ``alpha = f(a - b) = 1 - f(b - a)``, the same
  mixing, as every swap distribution is symmetric.)

`SortingPlan` compiles such a network into the form the layers execute: per layer, the
pairs of *slots* (positions of a length-``n`` state) holding the soft min and the soft max,
and at the end the slot of each ascending rank. Identity maps are not executed, so every
executed comparator is a real, soft one.

`layer_matrices` writes one layer as matrices: with ``D = S_lo - S_hi`` (``S`` the
one-hot slot-selection matrices, ``n x k``) and ``W`` the permutation swapping every pair,
a layer with swap probabilities ``alpha`` (``k``) is the symmetric, doubly stochastic

    M(alpha) = W + D diag(alpha) D^T,

the identity on each pair for ``alpha = 1`` and the swap for ``alpha = 0``; and
``b - a = -(x D)`` gives the comparator inputs.
"""

import math
from typing import NamedTuple

import numpy as np

from keras_newton import _checks

NETWORKS = ("odd_even", "bitonic")


def odd_even_network(n):
    """Layers of comparators ``(min_wire, max_wire)`` of the odd-even transposition network.

    Args:
        n: number of wires, ``n >= 1``.

    Returns:
        ``n`` lists of comparators (for ``n = 2`` every second layer is empty).
    """
    return [[(i, i + 1) for i in range(layer % 2, n - 1, 2)] for layer in range(n)]


def bitonic_network(n):
    """Layers of comparators ``(min_wire, max_wire)`` of diffsort's bitonic network on
    ``n`` wires.

    Batcher's network on ``N = 2^ceil(log2 n)`` wires with the top ``N - n`` discarded
    (see the module docstring); wire ``w`` here is wire ``N - n + w`` of the full network.
    A descending comparator of Batcher's construction appears with its wires swapped.
    Comparators touching a discarded wire are left out (identity maps), so a layer may
    be shorter than ``n / 2`` comparators.
    """
    k = math.ceil(math.log2(n)) if n > 1 else 0
    top = 2**k - n  # discarded wires 0 .. top - 1 of the full network
    layers = []
    for block in range(k):
        for stage in range(block + 1):
            half = 2 ** (block - stage)
            layer = []
            for start in range(0, 2**k, 2 * half):
                for j in range(half):
                    u, v = start + j, start + j + half
                    if u < top:  # u discarded: a no-op for v, or nothing at all
                        continue
                    ascending = ((u >> (block + 1)) & 1) == 0
                    u, v = u - top, v - top
                    layer.append((u, v) if ascending else (v, u))
            layers.append(layer)
    return layers


class SortingPlan(NamedTuple):
    """A sorting network compiled for execution on ``n`` slots.

    Attributes:
        n: number of values sorted.
        layers: tuple of ``(lo, hi)`` int32 arrays of equal length: in that layer, the soft
            min of slots ``lo[c]`` and ``hi[c]`` goes to slot ``lo[c]``, the soft max to
            ``hi[c]``. Slots in no pair keep their value.
        rank_slots: int32 array, ``rank_slots[r]`` is the slot holding rank ``r``
            (ascending) after the last layer.
    """

    n: int
    layers: tuple
    rank_slots: np.ndarray


def compile_plan(layers, n):
    """Compiles comparator layers on ``n`` wires into a `SortingPlan` on ``n`` slots.

    Wire ``w`` is slot ``w`` throughout (a comparator writes its soft min and max back to
    its own two wires), so rank ``r`` ends on slot ``r``; empty layers are dropped.

    Raises:
        ValueError: if a comparator is not two distinct wires in ``0..n-1`` or a layer
            uses a wire twice.
    """
    compiled = []
    for layer in layers:
        used = [w for pair in layer for w in pair]
        if any(not 0 <= w < n for w in used) or len(set(used)) != len(used):
            raise ValueError(f"Invalid comparator layer on {n} wires: {layer!r}.")
        if not layer:
            continue
        lo, hi = zip(*layer)
        compiled.append((np.asarray(lo, np.int32), np.asarray(hi, np.int32)))
    return SortingPlan(n, tuple(compiled), np.arange(n, dtype=np.int32))


def layer_matrices(lo, hi, n):
    """``(W, D)`` of one compiled layer (float64 NumPy): ``M(alpha) = W + D diag(alpha) D^T``."""
    k = len(lo)
    d = np.zeros((n, k))
    d[lo, np.arange(k)] = 1.0
    d[hi, np.arange(k)] = -1.0
    w = np.eye(n)
    w[lo, lo] = w[hi, hi] = 0.0
    w[lo, hi] = w[hi, lo] = 1.0
    return w, d


def sorting_plan(network, n):
    """The compiled `SortingPlan` of ``network`` (``"odd_even"`` or ``"bitonic"``) for ``n``.

    Raises:
        ValueError: for an unknown network name or ``n < 2``.
        TypeError: ``n`` is not an integer.
    """
    if network not in NETWORKS:
        raise ValueError(
            f"Unknown sorting network {network!r}: expected one of "
            f"{', '.join(repr(k) for k in NETWORKS)}."
        )
    n = _checks.check_int("n", n, 2)
    if network == "odd_even":
        return compile_plan(odd_even_network(n), n)
    return compile_plan(bitonic_network(n), n)
