"""AlgoVision's relaxed Bellman-Ford shortest path (Petersen et al., NeurIPS 2021).

"Learning with Algorithmic Supervision via Continuous Relaxations" relaxes the shortest
path algorithm used for the Warcraft benchmark: a Bellman-Ford forward pass in which the
``min`` over neighbours becomes a softmin, then a traceback from the target along soft
predecessors, the visited cells accumulated by a t-conorm. The Newton losses paper
(Table 2) trains on it with L1 and squared L2 losses, For and While tracebacks.
"""

import math

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.paths.grid import check_costs
from keras_newton.paths.grid import grid_shape
from keras_newton.paths.grid import neighbours
from keras_newton.paths.grid import transport

__all__ = ["RelaxedBellmanFord", "T_CONORMS", "t_conorm"]

T_CONORMS = ("probabilistic", "hamacher", "yager", "max")
_DEFAULT_P = {"hamacher": 5.0, "yager": 1.0}
_ALGOVISION_MAX_ITER = 2**10  # algovision.Algorithm(max_iter=...) default


def t_conorm(a, b, kind="probabilistic", p=None):
    """A t-conorm ``S(a, b)`` on [0, 1] (a relaxed logical "or").

    - ``"probabilistic"``: ``a + b - a b``;
    - ``"hamacher"`` (``p > 0``, default 5): ``(a + b + (p - 2) a b) / (1 + (p - 1) a b)``;
    - ``"yager"`` (``p >= 1``, default 1): ``min(1, (a^p + b^p)^(1/p))``;
    - ``"max"``: ``max(a, b)`` (the standard, Goedel t-conorm).
    """
    if kind == "probabilistic":
        return a + b - a * b
    if kind == "hamacher":
        p = _DEFAULT_P["hamacher"] if p is None else p
        ab = a * b
        return (a + b + (p - 2.0) * ab) / (1.0 + (p - 1.0) * ab)
    if kind == "yager":
        p = _DEFAULT_P["yager"] if p is None else p
        if p == 1:
            return ops.minimum(a + b, 1.0)
        s = ops.power(a, p) + ops.power(b, p)
        positive = s > 0
        root = ops.power(ops.where(positive, s, 1.0), 1.0 / p)
        return ops.minimum(ops.where(positive, root, 0.0), 1.0)
    if kind == "max":
        return ops.maximum(a, b)
    raise ValueError(
        f"Unknown t_conorm {kind!r}: expected one of {', '.join(map(repr, T_CONORMS))}."
    )


@keras.saving.register_keras_serializable(package="keras_newton")
class RelaxedBellmanFord(keras.layers.Layer):
    """Relaxed shortest path of AlgoVision (Petersen et al., NeurIPS 2021): costs -> soft path.

    Costs ``c`` of shape ``(B, H, W)`` (vertex weights, 8-neighbourhood, docs/conventions.md), path
    from the source ``(0, 0)`` to the target ``(H - 1, W - 1)``. By default the layer
    computes what AlgoVision's Warcraft shortest-path program computes (its
    ``examples/shortest_path.py``: ``T`` forward sweeps, then a ``For`` or ``While``
    traceback), to float rounding.

    Forward pass: ``T`` relaxed Bellman-Ford sweeps over a distance grid padded with a
    large value (AlgoVision: ``1e12``; every cell starts with it, the source with 0), the
    source reset to 0 after every sweep:

        w[v, k] = softmin_k(beta * d[u_k]) = softmax_k(-beta * d[u_k]),   u_k in N8(v)
        d[v]    = sum_k w[v, k] d[u_k] + c[v],        d[source] = 0

    The padding, and cells not reached yet, get weight ``exp(-beta 1e12) = 0`` next to a
    reached neighbour; this layer masks them out instead, which gives the same values
    without ever forming ``1e12``-sized intermediates, so that second derivatives
    (``NewtonLoss(curvature="hessian")``) stay finite. A cell none of whose neighbours is
    reached yet (only when ``T`` is too small for the grid) holds ``1e12 + e``; it takes
    the softmin of the excesses ``e`` over all 8 window entries (the padding has
    ``e = 0``), which is what AlgoVision computes in exact arithmetic (in float32
    ``1e12 + e`` rounds to ``1e12`` there and the weights become uniform).

    ``w`` of the last sweep is the soft predecessor distribution of every cell, the
    source's included. Traceback: the mass ``p`` starts as a unit at the target; the
    tracked path ``P`` starts at 0; one traceback step is AlgoVision's loop body

        P <- S(P, p),    p <- move(p, w)

    with ``S`` a t-conorm (a relaxed "or") and ``move`` sending the mass of every cell to
    its neighbours in proportion to ``w`` (mass sent outside the grid is lost). After
    ``t`` steps ``P_t = S(p_0, ..., p_{t-1})`` (``P_0 = 0``).

    - ``loop="for"``: ``T`` steps, the output is ``P_T``.
    - ``loop="while"``: AlgoVision's relaxed ``While(tracked_path[source] <= 1)``: with
      the condition ``sigmoid(beta (1 - P_t[source]))`` and ``q_t`` the product of the
      conditions of ``P_0, ..., P_t``, the output is AlgoVision's mixture of the states,
      ``(1 - q_0) P_0 + sum_{t >= 1} (q_{t-1} - q_t) P_t + q_n P_n``; ``n`` is the first
      step after which every map's ``q_n <= epsilon`` (the stop test is on the batch
      maximum, as in AlgoVision), at most ``max_iterations``.

    The source is not absorbing in AlgoVision: mass that reached it moves on to the
    source's soft predecessors (its cheapest neighbours) and marks them when the
    traceback runs longer than the path, a neighbour off the path included.
    ``absorbing_source=True`` deviates from AlgoVision there: the source keeps the mass
    that reached it, so surplus traceback steps change nothing and, as ``beta -> inf``
    (unique shortest path of at most ``T - 1`` steps), both loops converge to the exact
    path mask of `keras_newton.paths.shortest_path`. The values lie in [0, 1]; cells of
    tied predecessors share the mass.

    Computations run in float32, or in float64 for a layer built with
    ``dtype="float64"``; under mixed precision the output is cast back to the compute
    dtype.

    Bad costs (docs/conventions.md, "Grids and paths"):

    - ``+inf`` is a valid cost: a **blocked** cell, eagerly and in graphs. A blocked cell
      is never reached: it is masked out of its neighbours' softmin like the padding, so
      no traceback mass enters it and the output stays finite (the limit of a finite
      cost ``M -> inf``, which gives such a cell the softmin weight ``exp(-beta M) = 0``).
      The source's own cost never enters (``d[source] = 0``), and a blocked target
      still starts the traceback. If blocked cells cut the target off from the source,
      the output is finite but no longer a relaxed path to the source. Blocked cells get
      no gradient.
    - Negative and NaN costs are invalid. A layer called eagerly raises a ValueError
      naming the smallest cost and the number of NaNs. Inside a graph (``tf.function``,
      ``jax.jit``; ``model.fit`` on TensorFlow and JAX), where values cannot be
      inspected, a negative cost is read as 0 (its gradient is 0) and a NaN as ``+inf``
      (blocked). A cost model with a non-negative output (ReLU, softplus) avoids both.

    Args:
        beta: inverse temperature ``> 0`` of the softmin and of the relaxed while
            condition. AlgoVision's example: 10.
        iterations: number ``T`` of relaxation sweeps and of ``"for"`` traceback steps;
            ``None`` (default) uses ``2 * max(H, W) + 1`` (25 on 12x12 grids, the
            AlgoVision example's setting).
        loop: ``"for"`` or ``"while"`` traceback.
        t_conorm: ``"probabilistic"`` (default), ``"hamacher"``, ``"yager"`` or ``"max"``
            (see `t_conorm`).
        t_conorm_p: parameter of the Hamacher (``> 0``, default 5, as in AlgoVision's
            example) or Yager (``>= 1``, default 1) t-conorm; must be ``None`` otherwise.
        max_iterations: bound on the ``"while"`` traceback steps; ``None``: AlgoVision's
            ``2**10``. TensorFlow (eager, graph) and PyTorch only run the steps taken;
            under TensorFlow's XLA the buffers of the gradient are sized by the bound.
            JAX, which cannot reverse-differentiate a loop of data-dependent length, and
            PyTorch inside ``torch.func.vmap``, which cannot branch on data, run a loop
            of fixed length ``max_iterations`` whose steps after the stop change nothing
            (same values and gradients; on JAX they are skipped in chunks of 16, on
            PyTorch under ``vmap`` they are computed and discarded). A smaller bound
            (e.g. ``H * W``) is cheaper there, and gives the same values whenever the
            loop stops earlier (typically after 30 to 50 steps on 12x12 maps).
        epsilon: the ``"while"`` loop stops once every map's continuation probability is
            at most ``epsilon`` (AlgoVision's default 1e-5).
        absorbing_source: ``False`` (default): AlgoVision's traceback. ``True``: the
            source keeps the traceback mass that reached it (a deviation from
            AlgoVision, see above).
        **kwargs: `keras.layers.Layer` arguments (``name``, ``dtype``...).

    Example:

    ```python
    costs_model = keras_newton.models.comb_resnet18()          # images -> (B, 12, 12)
    model = keras.Sequential([costs_model, RelaxedBellmanFord(beta=10.0, loop="for")])
    model.compile("adam", loss=keras_newton.losses.PathLoss("l1"))
    model.fit(images, true_paths)
    ```
    """

    def __init__(self, beta=10.0, iterations=None, loop="for", t_conorm="probabilistic",
                 t_conorm_p=None, max_iterations=None, epsilon=1e-5, absorbing_source=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.beta = _checks.check_positive_float("beta", beta)
        self.iterations = _checks.check_positive_int("iterations", iterations, allow_none=True)
        if loop not in ("for", "while"):
            raise ValueError(f"loop must be 'for' or 'while'; received {loop!r}.")
        self.loop = loop
        if t_conorm not in T_CONORMS:
            raise ValueError(
                f"Unknown t_conorm {t_conorm!r}: expected one of "
                f"{', '.join(map(repr, T_CONORMS))}."
            )
        self.t_conorm = t_conorm
        if t_conorm_p is not None:
            if t_conorm not in _DEFAULT_P:
                raise ValueError(
                    f"t_conorm_p is a parameter of the 'hamacher' and 'yager' t-conorms; "
                    f"received t_conorm_p={t_conorm_p!r} with t_conorm={t_conorm!r}."
                )
            t_conorm_p = _checks.check_positive_float("t_conorm_p", t_conorm_p)
            if t_conorm == "yager" and t_conorm_p < 1:
                raise ValueError(
                    f"t_conorm_p of the 'yager' t-conorm must be >= 1; received "
                    f"{t_conorm_p!r}."
                )
        self.t_conorm_p = t_conorm_p
        self.max_iterations = _checks.check_positive_int("max_iterations", max_iterations,
                                                         allow_none=True)
        self.epsilon = _checks.check_positive_float("epsilon", epsilon)
        self.absorbing_source = _checks.check_bool("absorbing_source", absorbing_source)

    def _conorm(self, a, b):
        return t_conorm(a, b, self.t_conorm, self.t_conorm_p)

    def call(self, costs):
        costs = ops.convert_to_tensor(costs)
        out_dtype = costs.dtype
        if "float" not in keras.backend.standardize_dtype(out_dtype):
            out_dtype = "float32"  # integer costs: a soft path is computed and returned in float
        h, w = grid_shape(costs)
        work = "float64" if keras.backend.standardize_dtype(out_dtype) == "float64" else "float32"
        costs = ops.cast(costs, work)
        check_costs(costs)
        steps = self.iterations or 2 * max(h, w) + 1
        source = ops.reshape(ops.one_hot(0, h * w, dtype=work), (1, h, w))
        target = ops.reshape(ops.one_hot(h * w - 1, h * w, dtype=work), (1, h, w))
        is_source = source > 0
        beta = ops.cast(self.beta, work)

        # Bad costs (see the class docstring): +inf and NaN cells are blocked (`open_` 0:
        # never reached, so masked out of every softmin below; selecting `open_` instead
        # of casting adds no operation to a sweep), negative costs are read as 0; valid
        # finite costs pass unchanged (values and gradients).
        finite = costs < float("inf")
        open_ = ops.cast(ops.logical_or(finite, is_source), work)  # 1 open, 0 blocked
        costs = ops.where(ops.logical_and(finite, costs >= 0), costs, 0.0)

        # Forward: relaxed Bellman-Ford sweeps. `dist` holds d at reached cells and, at
        # the others, the excess of AlgoVision's d over its padding value 1e12 (0 for the
        # padding itself). Next to a reached cell the 1e12 entries get softmin weight
        # exp(-beta 1e12) = 0: they are masked out (same values), so every intermediate
        # stays of the size of the path costs and second derivatives stay finite.
        def sweep(_, state):
            dist, reached, _pred = state
            nd = neighbours(dist, 0.0)
            near = neighbours(reached, 0.0) > 0  # reached neighbours inside the grid
            has = ops.any(near, axis=-1, keepdims=True)
            pred = _masked_softmin(nd, ops.logical_or(near, ops.logical_not(has)), beta)
            dist = ops.where(is_source, 0.0, ops.sum(pred * nd, axis=-1) + costs)
            reached = ops.where(ops.logical_or(has[..., 0], is_source), open_, 0.0)
            return dist, reached, pred

        dist0 = ops.zeros_like(costs)
        reached0 = ops.broadcast_to(source, ops.shape(costs))
        pred0 = ops.zeros(ops.shape(costs) + (8,), dtype=work)
        _, _, pred = _bounded_loop(steps, sweep, (dist0, reached0, pred0))

        # Traceback. The first step, P_1 = S(0, p_0) = p_0, is taken here (S(0, x) = x
        # for every t-conorm); the loops run the remaining ones in the order
        # "p <- move(p); P <- S(P, p)", which skips AlgoVision's last, unused move.
        if self.absorbing_source:
            def move(trace):
                stay = trace * source
                return transport((trace - stay)[..., None] * pred) + stay
        else:
            def move(trace):
                return transport(trace[..., None] * pred)

        trace0 = ops.broadcast_to(target, ops.shape(costs))
        if self.loop == "for":
            def trace_step(_, state):
                trace, tracked = state
                trace = move(trace)
                return trace, self._conorm(tracked, trace)

            tracked = trace0
            if steps > 1:
                _, tracked = _bounded_loop(steps - 1, trace_step, (trace0, trace0))
        else:
            tracked = self._while_traceback(trace0, move, beta)
        tracked = ops.clip(tracked, 0.0, 1.0)
        return ops.cast(tracked, out_dtype)

    def _while_traceback(self, trace0, move, beta):
        # `go_on` runs inside the loop body with beta as a Python number: a constant tensor
        # captured by a TensorFlow while_loop body makes the loop's second derivative fail
        # to compile with XLA ("Propagate: Cannot find body function ..._const_0"), so the
        # Hessian under jit_compile needs it this way (same values).
        beta_value = float(self.beta)

        def go_on(tracked):  # AlgoVision's LEq(tracked_path[source], 1): sigmoid(beta (1 - x))
            return ops.sigmoid(beta_value * (1.0 - tracked[:, 0, 0]))

        def weight(q):
            return q[:, None, None]

        # State 0 (P_0 = 0) enters the mixture with weight 1 - q_0 and adds nothing. If
        # q_0 = sigmoid(beta) >= 1/2 is not above epsilon, no step runs: the output is 0.
        if not 1.0 / (1.0 + math.exp(-self.beta)) > self.epsilon:
            return ops.zeros_like(trace0)
        # Otherwise step 1 runs: P_1 = p_0.
        q0 = ops.sigmoid(beta) * ops.ones_like(trace0[:, 0, 0])
        q1 = q0 * go_on(trace0)
        acc1 = weight(q0 - q1) * trace0
        limit = self.max_iterations or _ALGOVISION_MAX_ITER
        if limit == 1:
            return acc1 + weight(q1) * trace0
        epsilon = self.epsilon

        def step(trace, tracked, q, acc):
            trace = move(trace)
            tracked = self._conorm(tracked, trace)
            q_next = q * go_on(tracked)
            acc = acc + weight(q - q_next) * tracked
            return trace, tracked, q_next, acc

        state = (trace0, trace0, q1, acc1)
        how = _while_strategy()
        if how == "dynamic":
            def cond(i, *state):
                return ops.logical_and(i < limit, ops.max(state[2]) > epsilon)

            def body(i, *state):
                return (i + 1,) + step(*state)

            _, _, tracked, q, acc = ops.while_loop(
                cond, body, (ops.convert_to_tensor(1, "int32"),) + state,
                maximum_iterations=limit - 1)
        elif how == "scan":
            tracked, q, acc = _scan_while(step, state, limit - 1, epsilon)[1:]
        else:
            # torch.func.vmap: no data-dependent Python control flow, so limit - 1
            # steps, each kept only while the loop runs (same values and gradients).
            for _ in range(limit - 1):
                running = ops.max(state[2]) > epsilon
                state = tuple(ops.where(running, new, old)
                              for new, old in zip(step(*state), state))
            _, tracked, q, acc = state
        return acc + weight(q) * tracked

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "iterations": self.iterations,
                "loop": self.loop,
                "t_conorm": self.t_conorm,
                "t_conorm_p": self.t_conorm_p,
                "max_iterations": self.max_iterations,
                "epsilon": self.epsilon,
                "absorbing_source": self.absorbing_source,
            }
        )
        return config


def _while_strategy():
    """How the ``"while"`` traceback runs on this backend, here.

    - ``"dynamic"``: `ops.while_loop`, only the steps taken. TensorFlow differentiates
      it (twice too); PyTorch runs it as a Python loop (eagerly and under
      ``torch.compile``, with a graph break per step).
    - ``"scan"`` (JAX): ``lax.while_loop`` with a data-dependent stop cannot be
      reverse-differentiated, so a ``max_iterations - 1`` step ``lax.scan`` whose steps
      after the stop are skipped (``lax.cond``): the same values and gradients.
    - ``"masked"`` (PyTorch inside ``torch.func.vmap``, which rejects data-dependent
      control flow): ``max_iterations - 1`` steps, each kept only while the loop runs.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return "scan"
    if backend == "torch" and _torch_in_vmap():
        return "masked"
    return "dynamic"


def _scan_while(step, state, steps, epsilon, chunk=16):
    """JAX: ``steps`` while-loop steps as a static-length loop (``lax.scan``, so that it
    is reverse-differentiable, twice too); a step taken after the stop (``max(q) <=
    epsilon``, ``q = state[2]``) is skipped by ``lax.cond``: the values and gradients of
    the dynamic loop.

    The steps run in chunks of ``chunk``; a chunk after the stop is skipped as a whole,
    and each chunk is rematerialised (`jax.checkpoint`) in the backward pass, so the
    gradient stores one state per chunk, not the residuals of every bound step. Measured
    (jitted forward and gradient, 32 maps of 12x12, float32, CPU): 40 ms with the default
    bound (1023 steps), 31 ms with a bound of 144, 20 ms for the For loop; without the
    chunks and rematerialisation, 300 ms with the default bound.
    """
    import jax

    def running(state):
        return ops.max(state[2]) > epsilon

    def single(_, state):
        return ops.cond(running(state), lambda: tuple(step(*state)), lambda: tuple(state))

    def run(state, length):
        return tuple(ops.fori_loop(0, length, single, tuple(state)))

    @jax.checkpoint
    def block(_, state):
        return ops.cond(running(state), lambda: run(state, chunk), lambda: tuple(state))

    full, rest = divmod(steps, chunk)
    state = tuple(state)
    if full:
        state = tuple(ops.fori_loop(0, full, block, state))
    return run(state, rest) if rest else state


def _torch_in_vmap():
    """Whether a ``torch.func.vmap`` transform is active (data-dependent control flow
    then fails); ``True`` if that cannot be told (the masked loop is always correct)."""
    import torch

    if torch.compiler.is_compiling():
        return False  # torch.compile: graph breaks handle the dynamic loop
    try:
        from torch._C._functorch import TransformType
        from torch._C._functorch import get_interpreter_stack
    except ImportError:  # pragma: no cover - private API moved
        return True
    stack = get_interpreter_stack() or ()
    return any(level.key() == TransformType.Vmap for level in stack)


def _bounded_loop(steps, body, state):
    """``for i in range(steps): state = body(i, state)`` (``steps`` is static).

    The relaxation must be differentiable twice on every backend, for
    ``NewtonLoss(curvature="hessian")``, so the loop has a static length, with the same
    operations in the same order (same values) on every backend:

    - TensorFlow, PyTorch: unrolled. TensorFlow's second derivatives of a `while_loop`
      neither vectorise (pfor) nor compile with XLA; the cost is a larger graph (longer
      tracing and XLA compilation).
    - JAX: `ops.fori_loop` with static bounds, i.e. ``lax.scan``, which JAX differentiates
      in both modes, to any order. Measured on the default For layer (jitted forward and
      gradient, 12x12, CPU): unrolled, the first call took 25 s on 3 maps (3 s on 32) and
      then 7 ms (46 ms); as a scan 0.7 s (0.8 s) and 1.7 ms (20 ms).
    """
    state = tuple(state)
    if keras.backend.backend() == "jax":
        return tuple(ops.fori_loop(0, steps, lambda i, s: tuple(body(i, s)), state))
    for i in range(steps):
        state = tuple(body(i, state))
    return state


def _masked_softmin(values, mask, beta):
    """``softmax(-beta * values)`` over the entries of the last axis where ``mask`` holds.

    Rows without any entry give zeros. Written out (shifted by the row minimum), not
    `ops.softmax`: masked entries never enter an exponential or a product.
    """
    top = ops.max(values, axis=-1, keepdims=True)
    low = ops.min(ops.where(mask, values, top), axis=-1, keepdims=True)
    shifted = ops.where(mask, values - ops.stop_gradient(low), 0.0)
    weights = ops.where(mask, ops.exp(-beta * shifted), 0.0)
    total = ops.sum(weights, axis=-1, keepdims=True)
    return weights / ops.where(total > 0, total, 1.0)
