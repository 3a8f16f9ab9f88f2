"""Float64 NumPy references of the sorting relaxations, written from the papers' formulas.

Orientation of every returned matrix: ``P[r, i]`` = probability that item ``i`` has
ascending rank ``r`` (docs/conventions.md). The papers' own orientations are converted here:
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


# -- PyTorch's BCELoss and the derivatives of the relaxations (for Newton targets) -----


def torch_bce_terms(p, q):
    """PyTorch ``BCELoss`` per entry: value, and its first and second derivative in ``p``.

    As ATen defines them: the value ``-(q max(log p, -100) + (1 - q) max(log1p(-p),
    -100))``, the backward ``(p - q) / max(p (1 - p), 1e-12)`` and the double backward
    ``(p^2 - 2 p q + q) / ((p + 1e-12)^2 (1 - p + 1e-12)^2)`` (not derivatives of each
    other where the clamps act). ``log 0`` counts as ``-inf`` (floored to -100). The
    backward's ``1e-12`` is a C++ ``float`` in ATen (``float32(1e-12)`` even for double
    inputs), the double backward's a ``double``.
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_1mp = np.maximum(np.log1p(-p), -100.0)
    value = -(q * log_p + (1.0 - q) * log_1mp)
    d1 = (p - q) / np.maximum(p * (1.0 - p), float(np.float32(1e-12)))
    d2 = (p * p - 2.0 * p * q + q) / ((p + 1e-12) ** 2 * (1.0 - p + 1e-12) ** 2)
    return value, d1, d2


def ranking_bce_torch(p, q):
    """Mean over the ``n x n`` entries of PyTorch's ``BCELoss`` (see `torch_bce_terms`)."""
    return float(np.mean(torch_bce_terms(p, q)[0]))


def ranking_bce_torch_derivatives(p, jac, hess, q):
    """``(loss, g, H)`` of `ranking_bce_torch` w.r.t. the scores by the chain rule.

    ``p`` ``(n, n)``, ``jac[r, i, m] = dP[r, i]/ds_m``, ``hess[r, i, m, k] =
    d2P[r, i]/ds_m ds_k``: ``g = sum l'(p) J``, ``H = sum l''(p) J J^T + l'(p) d2P``
    with PyTorch's ``l'`` and ``l''``, each divided by ``n^2`` (the mean).
    """
    value, d1, d2 = torch_bce_terms(p, q)
    n2 = p.size
    g = np.einsum("ri,rim->m", d1, jac) / n2
    h = (np.einsum("ri,rim,rik->mk", d2, jac, jac) + np.einsum("ri,rimk->mk", d1, hess)) / n2
    return float(np.mean(value)), g, 0.5 * (h + h.T)


def _softmax_rows_derivatives(logits, dlogits, d2logits):
    """``P``, ``dP`` ``(n, n, m)``, ``d2P`` ``(n, n, m, m)`` of row-wise ``softmax(L)``.

    Written so that nothing cancels for entries near 1 (their derivatives are as small as
    ``1 - p``): with ``G_j = sum_{l != j} p_l (dL_j - dL_l)``, ``dp_j = p_j G_j`` and
    ``d2p_j = p_j [c_j G_j G_j^T - sum_{l != j} p_l (G_l G_l^T - d2L_j + d2L_l)]`` where
    ``c_j = sum_{l != j} p_l`` is ``1 - p_j``.
    """
    p = _softmax_rows(logits)
    n, k = p.shape
    off = 1.0 - np.eye(k)  # [j, l]: l != j
    pl = p[:, None, :] * off[None]  # (rows, j, l)
    diff = dlogits[:, :, None, :] - dlogits[:, None, :, :]  # (rows, j, l, m)
    g = np.einsum("rjl,rjlm->rjm", pl, diff)
    jac = p[..., None] * g
    outer = np.einsum("rjm,rjk->rjmk", g, g)
    comp = pl.sum(axis=-1)
    d2diff = d2logits[:, :, None] - d2logits[:, None, :]  # (rows, j, l, m, k)
    inner = (comp[..., None, None] * outer
             - np.einsum("rjl,rlmk->rjmk", pl, outer)
             + np.einsum("rjl,rjlmk->rjmk", pl, d2diff))
    return p, jac, p[..., None, None] * inner


def neuralsort_derivatives(s, tau):
    """`neuralsort` with its exact first and second derivatives in ``s``.

    Logits (descending row ``i``, 1-based) ``L_ij = ((n + 1 - 2 i) s_j - sum_k |s_j -
    s_k|) / tau``: ``dL_ij/ds_m = ((n + 1 - 2 i) [j = m] - sum_k sign(s_j - s_k)([j = m]
    - [k = m])) / tau``, ``d2L = 0`` (distinct scores). Returns ``(P, dP, d2P)``.
    """
    s = np.asarray(s, np.float64)
    n = len(s)
    eye = np.eye(n)
    a_one = np.abs(s[:, None] - s[None, :]) @ np.ones(n)
    sign = np.sign(s[:, None] - s[None, :])  # [j, k]
    d_a_one = sign.sum(axis=1)[:, None] * eye - sign  # [j, m]: d(A 1)_j / ds_m
    logits, dlogits = [], []
    for i in range(1, n + 1):
        logits.append(((n + 1 - 2 * i) * s - a_one) / tau)
        dlogits.append(((n + 1 - 2 * i) * eye - d_a_one) / tau)
    p, jac, hess = _softmax_rows_derivatives(np.array(logits), np.array(dlogits),
                                             np.zeros((n, n, n, n)))
    return p[::-1], jac[::-1], hess[::-1]


def softsort_derivatives(s, tau, power=1.0):
    """`softsort` with its exact derivatives (the sorting permutation held fixed).

    Row ``r`` (descending) ``L_rj = -|d_rj|^p / tau`` with ``d_rj = s_(r) - s_j``,
    ``e_rj = e_(r) - e_j``: ``dL = -p |d|^(p-1) sign(d) e / tau`` and ``d2L = -p (p - 1)
    |d|^(p-2) e e^T / tau`` (0 where ``d = 0``). Returns ``(P, dP, d2P)``.
    """
    s = np.asarray(s, np.float64)
    n = len(s)
    order = np.argsort(-s, kind="stable")
    d = s[order][:, None] - s[None, :]
    e = np.eye(n)[order][:, None, :] - np.eye(n)[None, :, :]  # (r, j, m)
    ad = np.abs(d)
    safe = np.where(ad > 0, ad, 1.0)
    first = np.where(ad > 0, -power * safe ** (power - 1) * np.sign(d) / tau, 0.0)
    second = np.where(ad > 0, -power * (power - 1) * safe ** (power - 2) / tau, 0.0)
    logits = -(ad ** power) / tau
    p, jac, hess = _softmax_rows_derivatives(
        logits, first[..., None] * e, second[..., None, None] * e[..., :, None] * e[..., None, :])
    return p[::-1], jac[::-1], hess[::-1]


def _sigmoid_f_derivatives(v_diff, steepness, distribution):
    """``f'`` and ``f''`` of `sigmoid_f` with respect to ``v_diff``."""
    b = steepness
    x = b * v_diff
    if distribution == "logistic":
        ds = special.expit(x) * special.expit(-x)
        return b * ds, b * b * ds * (special.expit(-x) - special.expit(x))
    if distribution == "gaussian":
        phi = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return b * phi, -b * b * x * phi
    if distribution == "reciprocal":
        return b / (2 + abs(x)) ** 2, -2 * b * b * np.sign(x) / (2 + abs(x)) ** 3
    if distribution == "cauchy":
        return b / (math.pi * (1 + x * x)), -2 * b * b * x / (math.pi * (1 + x * x) ** 2)
    if distribution == "optimal":
        if abs(x) > 0.25:
            return b / (16 * x * x), -b * b / (8 * x ** 3)
        return b, 0.0
    raise ValueError(f"no derivatives for distribution {distribution!r}")


def diffsort_derivatives(s, network, steepness, distribution):
    """`diffsort` with exact first and second derivatives, by second-order forward mode.

    Every wire value and permutation entry carries ``(value, gradient, Hessian)`` in
    ``s`` through the comparators `diffsort` runs (``"bitonic"``: the columns of
    `diffsort_bitonic_matrices`, identity maps included); the soft swap's ``alpha =
    f(b - a)`` gets its derivatives from `_sigmoid_f_derivatives`. Returns ``(P, dP,
    d2P)``, ``P[rank, item]``.
    """
    s = np.asarray(s, np.float64)
    n = len(s)
    if network == "bitonic":
        layers = []  # per layer: columns (a, b, min wire, max wire, weight)
        for split_a, split_b, combine_min, combine_max in diffsort_bitonic_matrices(n):
            cols = []
            for c in range(split_a.shape[0]):
                lo, hi = int(np.argmax(combine_min[:, c])), int(np.argmax(combine_max[:, c]))
                cols.append((int(np.argmax(split_a[c])), int(np.argmax(split_b[c])), lo, hi,
                             combine_min[lo, c]))
            layers.append(cols)
    else:
        layers = [[(lo, hi, lo, hi, 1.0) for lo, hi, _ in layer]
                  for layer in odd_even_comparators(n)]

    def const(v):
        return (float(v), np.zeros(n), np.zeros((n, n)))

    def add(a, b, sign=1.0):
        return (a[0] + sign * b[0], a[1] + sign * b[1], a[2] + sign * b[2])

    def scale(a, w):
        return (w * a[0], w * a[1], w * a[2])

    def mul(a, b):
        return (a[0] * b[0], a[0] * b[1] + b[0] * a[1],
                a[0] * b[2] + b[0] * a[2] + np.outer(a[1], b[1]) + np.outer(b[1], a[1]))

    x = [(s[i], np.eye(n)[i], np.zeros((n, n))) for i in range(n)]
    X = [[const(float(w == i)) for i in range(n)] for w in range(n)]  # X[wire][item]
    for cols in layers:
        new_x = [const(0.0) for _ in range(n)]
        new_X = [[const(0.0) for _ in range(n)] for _ in range(n)]
        for a_w, b_w, lo, hi, weight in cols:
            a, b = x[a_w], x[b_w]
            diff = add(b, a, -1.0)
            f1, f2 = _sigmoid_f_derivatives(diff[0], steepness, distribution)
            alpha = (sigmoid_f(diff[0], steepness, distribution), f1 * diff[1],
                     f2 * np.outer(diff[1], diff[1]) + f1 * diff[2])
            beta = add(const(1.0), alpha, -1.0)  # 1 - alpha, as `diffsort` computes it
            new_x[lo] = add(new_x[lo], scale(add(mul(alpha, a), mul(beta, b)), weight))
            new_x[hi] = add(new_x[hi], scale(add(mul(beta, a), mul(alpha, b)), weight))
            for i in range(n):
                u, v = X[a_w][i], X[b_w][i]
                new_X[lo][i] = add(new_X[lo][i], scale(add(mul(alpha, u), mul(beta, v)), weight))
                new_X[hi][i] = add(new_X[hi][i], scale(add(mul(beta, u), mul(alpha, v)), weight))
        touched = {w for col in cols for w in col[2:4]}
        x = [new_x[w] if w in touched else x[w] for w in range(n)]
        X = [new_X[w] if w in touched else X[w] for w in range(n)]
    p = np.array([[e[0] for e in row] for row in X])
    jac = np.array([[e[1] for e in row] for row in X])
    hess = np.array([[e[2] for e in row] for row in X])
    return p, jac, hess
