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


def diffsort(s, network, steepness, distribution, art_lambda=0.25):
    """Differentiable sorting network on padded wires (pads are +inf: alpha is 1 or 0)."""
    s = np.asarray(s, np.float64)
    n = len(s)
    if network == "odd_even":
        wires, layers = n, odd_even_comparators(n)
    else:
        wires = 1
        while wires < n:
            wires *= 2
        layers = bitonic_comparators(wires)
    x = np.concatenate([s, np.zeros(wires - n)])
    pad = np.array([False] * n + [True] * (wires - n))
    X = np.zeros((wires, n))  # X[wire, item]
    X[:n, :n] = np.eye(n)
    for layer in layers:
        for i, j, ascending in layer:
            lo, hi = (i, j) if ascending else (j, i)  # lo receives the min
            a, b = x[lo], x[hi]
            if pad[lo] and pad[hi]:
                continue
            if pad[hi]:
                alpha = 1.0
            elif pad[lo]:
                alpha = 0.0
            else:
                alpha = sigmoid_f(b - a, steepness, distribution, art_lambda)
            if pad[lo] or pad[hi]:
                # +inf never mixes: move the real value to `lo` if needed.
                if alpha == 0.0:
                    x[lo], x[hi] = x[hi], x[lo]
                    X[[lo, hi]] = X[[hi, lo]]
                    pad[lo], pad[hi] = pad[hi], pad[lo]
                continue
            x[lo], x[hi] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
            X[lo], X[hi] = alpha * X[lo] + (1 - alpha) * X[hi], (1 - alpha) * X[lo] + alpha * X[hi]
    assert not pad[:n].any()
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
