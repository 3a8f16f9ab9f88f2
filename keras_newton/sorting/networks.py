"""Sorting networks for any ``n``: odd-even transposition and bitonic.

A sorting network is a fixed sequence of layers of comparators; a comparator of wires
``(u, v)`` writes the smaller of its two values to wire ``u`` and the larger to ``v``
(Knuth, TAOCP vol. 3, 5.3.4). Differentiable sorting networks (Petersen et al., ICML
2021) replace each comparator by a soft conditional swap (`distributions.py`).

- Odd-even transposition network: ``n`` layers; layer ``l`` compares the neighbours
  ``(i, i + 1)`` for ``i = l mod 2, l mod 2 + 2, ...``. Sorts any ``n``.
- Bitonic network (Batcher, 1968): for ``N = 2^k`` wires, ``k (k + 1) / 2`` layers. For
  ``n`` that is not a power of two the input is padded with ``N - n`` wires holding
  ``+inf``: a comparator between a real value and ``+inf`` is decided in advance (the real
  value goes to the comparator's min wire) and a comparator of two pads does nothing, so
  the pads never mix with real values and need not be computed at all.

`SortingPlan` compiles such a network into the form the layers execute: per layer, the
pairs of *slots* (positions of a length-``n`` state) holding the soft min and the soft max,
and at the end the slot of each ascending rank. Moves that involve padding become a
relabelling of slots, so every executed comparator is a real, soft one.

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
    """Bitonic network on ``N = 2^ceil(log2 n)`` wires, as ``(layers, N)``.

    Each layer is a list of comparators ``(min_wire, max_wire)``; a descending comparator
    of Batcher's construction appears with its wires swapped. Wires ``n .. N-1`` are the
    ``+inf`` padding.
    """
    k = max(1, math.ceil(math.log2(n))) if n > 1 else 0
    wires = 2**k
    layers = []
    for block in range(k):
        for stage in range(block + 1):
            half = 2 ** (block - stage)
            layer = []
            for start in range(0, wires, 2 * half):
                for j in range(half):
                    u, v = start + j, start + j + half
                    ascending = ((u >> (block + 1)) & 1) == 0
                    layer.append((u, v) if ascending else (v, u))
            layers.append(layer)
    return layers, wires


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


def compile_plan(layers, n, wires=None):
    """Compiles comparator layers on ``wires`` wires (real values on wires ``0..n-1``, the
    rest ``+inf`` padding) into a `SortingPlan` on ``n`` slots."""
    wires = n if wires is None else wires
    slot_of_wire = {w: w for w in range(n)}  # wire -> slot, for wires holding real values
    compiled = []
    for layer in layers:
        lo, hi = [], []
        new_map = dict(slot_of_wire)
        for u, v in layer:  # u receives the min, v the max
            su, sv = slot_of_wire.get(u), slot_of_wire.get(v)
            new_map.pop(u, None)
            new_map.pop(v, None)
            if su is not None and sv is not None:
                lo.append(su)
                hi.append(sv)
                new_map[u], new_map[v] = su, sv
            elif su is not None or sv is not None:
                new_map[u] = su if su is not None else sv  # real value to the min wire
        slot_of_wire = new_map
        if not lo:
            continue
        compiled.append((np.asarray(lo, np.int32), np.asarray(hi, np.int32)))
    ranks = [slot_of_wire.get(w) for w in range(n)]
    if any(r is None for r in ranks) or sorted(ranks) != list(range(n)):
        raise AssertionError(f"the network does not route the {n} values to wires 0..n-1")
    return SortingPlan(n, tuple(compiled), np.asarray(ranks, np.int32))


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
    """
    if network not in NETWORKS:
        raise ValueError(
            f"Unknown sorting network {network!r}: expected one of "
            f"{', '.join(repr(k) for k in NETWORKS)}."
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"A sorting network needs n >= 2 values to sort; received n={n!r}.")
    n = int(n)
    if network == "odd_even":
        return compile_plan(odd_even_network(n), n)
    layers, wires = bitonic_network(n)
    return compile_plan(layers, n, wires)
