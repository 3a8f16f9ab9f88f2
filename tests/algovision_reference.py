"""Float64 NumPy re-implementation of AlgoVision's relaxed shortest path, as it executes.

AlgoVision (Petersen et al., NeurIPS 2021, ``Felix-Petersen/algovision``) writes the
Warcraft shortest path as an algorithm of relaxed statements (its
``examples/shortest_path.py``). This module replays that program statement by statement
on a batch of cost maps ``(B, H, W)``, written from AlgoVision's semantics, not from
`keras_newton.paths.RelaxedBellmanFord`:

- ``d``: the distance grid padded to ``(H + 2, W + 2)``, every entry ``INFTY`` (1e12),
  then ``d[source] = 0``; ``trace_pos`` one-hot at the target, ``tracked_path`` zero.
- Forward: ``n_iter`` times, each interior cell takes the 3x3 window of the padded ``d``
  without its centre (``unfold`` order: row-major), ``w = softmin(beta * window)``,
  ``d = sum(w * window) + cost`` (padding rebuilt with ``INFTY``), then
  ``d[source] = 0``; ``d_predecessor`` keeps the ``w`` of the last sweep.
- Traceback body: ``tracked_path = S(tracked_path, trace_pos)`` (a t-conorm), then
  ``trace_pos`` moves: the mass of each cell goes to its neighbours in proportion to
  ``d_predecessor`` (mass sent outside the grid is lost).
- ``For``: the body ``n_iter`` times.
- ``While(LEq(tracked_path[source], 1))``: AlgoVision's ``While``. The condition is the
  logistic ``sigmoid(-beta (tracked_path[source] - 1))``; with ``p_after`` the running
  product of the conditions (``p_before`` the previous one), the returned state is
  ``(1 - p_0) state_0 + sum_i (p_{i-1} - p_i) state_i + p_last state_last``; the loop
  runs while ``max over the batch of p_after > epsilon`` and fewer than ``max_iter``
  bodies ran (``Algorithm`` defaults: ``epsilon=1e-5``, ``max_iter=2**10``).

``absorbing_source=True`` changes one thing: the source keeps its ``trace_pos`` mass
(the documented deviation of `RelaxedBellmanFord(absorbing_source=True)`). ``infinity``
replaces AlgoVision's 1e12; it only matters through rounding (see `relaxed_shortest_path`).
"""

import numpy as np

INFTY = 1e12
# 3x3 window without its centre, row-major (torch.nn.functional.unfold's order).
WINDOW = [(a - 1, b - 1) for a in range(3) for b in range(3) if (a, b) != (1, 1)]


def t_conorm(a, b, kind="probabilistic", p=None):
    """The t-conorms of AlgoVision's example (``yager`` with ``p == 1`` is its
    ``yager_1``; general ``p`` and ``max`` are the layer's extensions)."""
    if kind == "probabilistic":
        return a + b - a * b
    if kind == "hamacher":
        p = 5.0 if p is None else p
        return (a + b + (p - 2) * a * b) / (1 + (p - 1) * a * b)
    if kind == "yager":
        p = 1.0 if p is None else p
        if p == 1:
            return 1 - np.maximum(1 - a - b, 0.0)  # 1 - relu(1 - a - b)
        return np.minimum(1.0, (a**p + b**p) ** (1.0 / p))
    if kind == "max":
        return np.maximum(a, b)
    raise ValueError(kind)


def _softmin(x, beta):
    """``torch.nn.functional.softmin(x * beta, dim=-1)``."""
    z = -(x * beta)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(cost, beta, n_iter, infinity=INFTY):
    """The Bellman-Ford part: returns ``d_predecessor`` ``(B, H, W, 8)`` and the padded ``d``."""
    b, h, w = cost.shape
    d = np.full((b, h + 2, w + 2), infinity)
    d[:, 1, 1] = 0.0
    pred = np.zeros((b, h, w, 8))
    for _ in range(n_iter):
        window = np.stack([d[:, 1 + di:1 + di + h, 1 + dj:1 + dj + w] for di, dj in WINDOW],
                          axis=-1)
        pred = _softmin(window, beta)
        new = np.full((b, h + 2, w + 2), infinity)
        new[:, 1:-1, 1:-1] = (pred * window).sum(axis=-1) + cost
        new[:, 1, 1] = 0.0
        d = new
    return pred, d


def transition_matrices(pred, absorbing_source=False):
    """``M[b]`` with ``next_trace.ravel() = M[b] @ trace.ravel()``, built cell by cell."""
    b, h, w, _ = pred.shape
    m = np.zeros((b, h * w, h * w))
    for i in range(h):
        for j in range(w):
            if absorbing_source and (i, j) == (0, 0):
                m[:, 0, 0] = 1.0
                continue
            for k, (di, dj) in enumerate(WINDOW):
                if 0 <= i + di < h and 0 <= j + dj < w:
                    m[:, (i + di) * w + j + dj, i * w + j] += pred[:, i, j, k]
    return m


def relaxed_shortest_path(cost, beta=10.0, n_iter=25, t_conorm_kind="probabilistic", p=None,
                          loop="for", absorbing_source=False, epsilon=1e-5, max_iter=2**10,
                          infinity=INFTY, return_iterations=False):
    """AlgoVision's ``tracked_path`` for costs ``(B, H, W)`` (float64).

    With ``return_iterations`` also the number of traceback bodies that ran.

    Cells no neighbour of which was reached yet (``n_iter`` too small for the grid) hold
    ``infinity + excess`` and take the softmin of the excesses over all 8 window entries
    (padding included); in float64 ``1e12 + excess`` keeps only ~1e-4 of the excess, so
    compare such cases with a smaller ``infinity`` (e.g. 1e6: exp(-beta * 1e6) is still 0).
    """
    cost = np.asarray(cost, np.float64)
    b, h, w = cost.shape
    pred, _ = forward(cost, beta, n_iter, infinity)
    m = transition_matrices(pred, absorbing_source)

    def move(trace):
        return np.einsum("bij,bj->bi", m, trace.reshape(b, -1)).reshape(b, h, w)

    def condition(tracked):  # LEq(lambda tracked_path: tracked_path[:, 0, 0], 1.)
        return 1.0 / (1.0 + np.exp(-(-((tracked[:, 0, 0] - 1.0) * beta))))

    trace = np.zeros((b, h, w))
    trace[:, -1, -1] = 1.0
    tracked = np.zeros((b, h, w))
    if loop == "for":
        for _ in range(n_iter):
            tracked = t_conorm(tracked, trace, t_conorm_kind, p)
            trace = move(trace)
        return (tracked, n_iter) if return_iterations else tracked
    if loop != "while":
        raise ValueError(loop)
    p_after = condition(tracked)
    p_before = np.ones_like(p_after)
    acc = (p_before - p_after)[:, None, None] * tracked
    i = 0
    while p_after.max() > epsilon and i < max_iter:
        tracked = t_conorm(tracked, trace, t_conorm_kind, p)
        trace = move(trace)
        p_before = p_after
        p_after = p_after * condition(tracked)
        acc = acc + (p_before - p_after)[:, None, None] * tracked
        i += 1
    acc = acc + p_after[:, None, None] * tracked
    return (acc, i) if return_iterations else acc


def source_neighbour_off_path_mass(soft, true_paths):
    """Mean of ``soft`` over the grid neighbours of the source that are off the true path
    (all maps pooled); ``nan`` if there are none."""
    soft = np.asarray(soft, np.float64)
    values = []
    for s, t in zip(soft, np.asarray(true_paths)):
        for i, j in ((0, 1), (1, 0), (1, 1)):
            if i < s.shape[0] and j < s.shape[1] and t[i, j] == 0:
                values.append(s[i, j])
    return float(np.mean(values)) if values else float("nan")
