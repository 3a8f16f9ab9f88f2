"""Float64 NumPy references of the sorting relaxations, written from the papers' formulas.

Orientation of every returned matrix: ``P[r, i]`` = probability that item ``i`` has
ascending rank ``r`` (DESIGN.md). The papers' own orientations are converted here:
NeuralSort and SoftSort produce descending rows (reversed), diffsort's ``X`` is
``[item, wire]`` (transposed).
"""

import math

import numpy as np
from scipy import special


def _softmax_rows(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def neuralsort(s, tau):
    """Grover et al. 2019, Eq. (5): P_desc[i,:] = softmax(((n+1-2i) s - A_s 1) / tau)."""
    s = np.asarray(s, np.float64)
    n = len(s)
    a_one = np.abs(s[:, None] - s[None, :]) @ np.ones(n)
    rows = []
    for i in range(1, n + 1):  # 1-based, descending
        rows.append(_softmax_rows(((n + 1 - 2 * i) * s - a_one) / tau))
    return np.array(rows)[::-1]


def softsort(s, tau, power=1.0):
    """Prillo & Eisenschlos 2020: softmax(-|sort(s) 1^T - 1 s^T|^p / tau), sort descending."""
    s = np.asarray(s, np.float64)
    desc = -np.sort(-s)
    d = np.abs(desc[:, None] - s[None, :]) ** power
    return _softmax_rows(-d / tau)[::-1]


def sigmoid_f(v_diff, steepness, distribution, art_lambda=0.25):
    """alpha = f(b - a) for the swap distributions of Petersen et al. 2021 / 2022."""
    x = steepness * v_diff
    if distribution == "logistic":
        return special.expit(x)
    if distribution == "logistic_phi":
        return special.expit(steepness * v_diff / (abs(v_diff) + 1e-10) ** art_lambda)
    if distribution == "gaussian":
        return special.ndtr(x)
    if distribution == "reciprocal":
        return 0.5 * (x / (2 + abs(x)) + 1)
    if distribution == "cauchy":
        return math.atan(x) / math.pi + 0.5
    if distribution == "optimal":
        if x < -0.25:
            return -1.0 / (16.0 * x)
        if x > 0.25:
            return 1.0 - 1.0 / (16.0 * x)
        return x + 0.5
    raise ValueError(distribution)


def odd_even_comparators(n):
    """Odd-even transposition sort: n rounds of neighbour compare-exchanges (ascending)."""
    return [[(i, i + 1, True) for i in range(r % 2, n - 1, 2)] for r in range(n)]


def bitonic_comparators(n_wires):
    """Batcher's bitonic sort in the XOR formulation: (i, partner, ascending)."""
    layers = []
    k = 2
    while k <= n_wires:
        j = k // 2
        while j >= 1:
            layer = []
            for i in range(n_wires):
                partner = i ^ j
                if partner > i:
                    layer.append((i, partner, (i & k) == 0))
            layers.append(layer)
            j //= 2
        k *= 2
    return layers


# diffsort (Felix-Petersen/diffsort, networks.bitonic_network): a comparator that touches
# exactly one discarded wire maps the real wire onto itself with both combine weights 0.5.
IDENTITY_MAP_FACTOR = 0.5


def diffsort_bitonic_matrices(n):
    """The layers of diffsort's bitonic network for ``n`` values, as it builds them.

    On ``N = 2^ceil(log2 n)`` wires, the top ``N - n`` wires are discarded and value ``i``
    sits on wire ``N - n + i``. Every comparator of the layer is one column ``c`` of
    ``split_a, split_b`` (``(c, n)``: which wire is ``a``, which is ``b``) and of
    ``combine_min, combine_max`` (``(n, c)``: where the soft min and max go):

    - two real wires ``i < j``: ``a = i``, ``b = j``; the min goes to ``i`` and the max
      to ``j`` for an ascending comparator, the other way round for a descending one;
    - one real wire ``w``: ``a = b = w`` and the min and the max both go to ``w`` with
      weight `IDENTITY_MAP_FACTOR` (an identity map);
    - no real wire: no column.
    """
    wires = 1
    while wires < n:
        wires *= 2
    top = wires - n
    out = []
    for layer in bitonic_comparators(wires):
        cols = []  # (a, b, min wire, max wire, weight)
        for i, j, ascending in layer:
            if i >= top:
                lo, hi = (i, j) if ascending else (j, i)
                cols.append((i, j, lo, hi, 1.0))
            elif j >= top:
                cols.append((j, j, j, j, IDENTITY_MAP_FACTOR))
        split_a, split_b = np.zeros((len(cols), n)), np.zeros((len(cols), n))
        combine_min, combine_max = np.zeros((n, len(cols))), np.zeros((n, len(cols)))
        for c, (a, b, lo, hi, weight) in enumerate(cols):
            split_a[c, a - top] = 1.0
            split_b[c, b - top] = 1.0
            combine_min[lo - top, c] = weight
            combine_max[hi - top, c] = weight
        out.append((split_a, split_b, combine_min, combine_max))
    return out


def diffsort_forward(s, matrices, steepness, distribution, art_lambda=0.25):
    """diffsort's forward pass (functional.execute_sort) for one score vector, float64.

    Returns ``X[item, wire]`` after the last layer, diffsort's orientation (wire ``r`` of
    the output holds ascending rank ``r``).
    """
    x = np.asarray(s, np.float64)
    big_x = np.eye(len(x))
    f = np.vectorize(lambda d: sigmoid_f(d, steepness, distribution, art_lambda),
                     otypes=[np.float64])
    for split_a, split_b, combine_min, combine_max in matrices:
        a, b = split_a @ x, split_b @ x
        alpha = f(b - a)
        xa, xb = big_x @ split_a.T, big_x @ split_b.T  # (item, comparator)
        w_min = alpha * xa + (1 - alpha) * xb
        w_max = (1 - alpha) * xa + alpha * xb
        big_x = w_max @ combine_max.T + w_min @ combine_min.T
        x = (combine_min @ (alpha * a + (1 - alpha) * b)
             + combine_max @ ((1 - alpha) * a + alpha * b))
    return big_x


def diffsort(s, network, steepness, distribution, art_lambda=0.25):
    """Differentiable sorting network, ``P[rank, item]``.

    ``"bitonic"`` is diffsort's layout (`diffsort_bitonic_matrices`, top wires discarded)
    run as diffsort runs it (`diffsort_forward`), transposed. ``"odd_even"`` runs the
    comparators one at a time on ``n`` wires.
    """
    s = np.asarray(s, np.float64)
    n = len(s)
    if network == "bitonic":
        return diffsort_forward(s, diffsort_bitonic_matrices(n), steepness, distribution,
                                art_lambda).T
    x = s.copy()
    X = np.eye(n)  # X[wire, item]
    for layer in odd_even_comparators(n):
        for lo, hi, _ in layer:
            a, b = x[lo], x[hi]
            alpha = sigmoid_f(b - a, steepness, distribution, art_lambda)
            x[lo], x[hi] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
            X[lo], X[hi] = alpha * X[lo] + (1 - alpha) * X[hi], (1 - alpha) * X[lo] + alpha * X[hi]
    return X


def padded_bitonic(s, steepness, distribution, art_lambda=0.25):
    """The bitonic layout that pads ``+inf`` wires at the bottom instead (``P[rank, item]``).

    It also sorts but its relaxation differs from diffsort's for ``n`` not a power of two;
    kept to show that the two layouts differ.
    """
    s = np.asarray(s, np.float64)
    n = len(s)
    wires = 1
    while wires < n:
        wires *= 2
    x = np.concatenate([s, np.full(wires - n, np.inf)])
    X = np.zeros((wires, n))
    X[:n] = np.eye(n)
    for layer in bitonic_comparators(wires):
        for i, j, ascending in layer:
            lo, hi = (i, j) if ascending else (j, i)
            if np.isinf(x[lo]) or np.isinf(x[hi]):  # +inf never mixes: hard swap
                if x[lo] > x[hi]:
                    x[[lo, hi]] = x[[hi, lo]]
                    X[[lo, hi]] = X[[hi, lo]]
                continue
            a, b = x[lo], x[hi]
            alpha = sigmoid_f(b - a, steepness, distribution, art_lambda)
            x[lo], x[hi] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
            X[lo], X[hi] = alpha * X[lo] + (1 - alpha) * X[hi], (1 - alpha) * X[lo] + alpha * X[hi]
    return X[:n]


def true_permutation(y):
    """Q[r, i] = 1 iff item i has stable ascending rank r."""
    order = np.argsort(np.asarray(y), kind="stable")
    q = np.zeros((len(order), len(order)))
    q[np.arange(len(order)), order] = 1.0
    return q


def ranking_bce(p, q, eps=1e-7):
    """Mean over the n x n entries of elementwise BCE, probabilities clipped to [eps, 1-eps]."""
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(q * np.log(p) + (1 - q) * np.log(1 - p))))
