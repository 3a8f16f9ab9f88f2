"""Shared pieces of the sampled losses: Gaussian perturbations and estimate-as-gradient.

Both sampled losses perturb a batch of predictions ``y`` ``(B, ...)`` with ``S`` Gaussian
samples each, ``y + sigma * eps``, evaluate a black box on the ``B * S`` perturbed points at
once (sample ``s`` of item ``b`` at row ``b * S + s``), and expose their estimates twice: as
the gradient of a plain Keras loss (`estimate_as_gradient`) and, through the provider
protocol, to `NewtonLoss`.

**Noise state.** The samples come from the loss's ``seed_generator``
(`keras.random.SeedGenerator`), whose state advances at every draw. TensorFlow and
PyTorch update it in place, in ``fit`` with or without ``jit_compile``. Keras' JAX trainer
is stateless: it carries only the model's variables, the optimizer's and the metrics'
through a training step, and drops any other update, so a loss's own seed generator would
give the same noise at every step. On JAX the loss therefore hands its seed-generator
state to the compiled loss of the model that uses it (`model.compile(loss=...)`), as the
variable of a metric-shaped carrier (`NoiseState`, listed in ``model.metrics``, reporting
nothing and never reset): the trainer then carries it with the metrics' variables, and
every step draws fresh noise (``jit_compile`` on or off, ``fit`` and ``evaluate``). The
draws are the ones the same loss would make eagerly, call after call. The carrier is found
when Keras first runs the loss symbolically to build the compiled model (it looks for the
calling ``CompileLoss`` up the call stack: Keras gives a loss no handle on its model).
"""

import math
import sys
import warnings

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.curvature.protocol import LossDerivatives


def flatten(y):
    """``(B, ...)`` -> ``(B, m)``, keeping ``m`` static when the sample shape is."""
    dims = tuple(y.shape[1:])
    m = -1 if any(d is None for d in dims) else int(math.prod(dims))
    return ops.reshape(y, (ops.shape(y)[0], m))


def draw_noise(y_flat, samples, seed_generator):
    """``eps ~ N(0, I)`` of shape ``(B, S, m)`` for a batch ``y_flat`` ``(B, m)``."""
    batch, m = ops.shape(y_flat)[0], y_flat.shape[-1]
    return keras.random.normal((batch, samples, m), dtype=y_flat.dtype, seed=seed_generator)


def perturbed(y_flat, eps, sigma):
    """The points ``y + sigma * eps`` as rows ``(B * S, m)``: returns ``(eps, points)``."""
    m = y_flat.shape[-1]
    return eps, ops.reshape(y_flat[:, None, :] + sigma * eps, (-1, m))


class NoiseState(keras.metrics.Metric):
    """Carries a sampled loss's seed-generator state through Keras' JAX trainer.

    Its only variable is the state of ``generator`` (not a copy): listed among a
    compiled loss's metrics, it is one of the model's ``metrics_variables``, which the
    stateless JAX trainer passes into a training step and takes back with the updates the
    loss made. It reports nothing (``result()`` is an empty dict, so no log entry), and
    ``reset_state`` keeps the state (Keras resets metrics at every epoch; the noise stream
    must go on). Created by the sampled losses; not meant to be compiled by hand.
    """

    def __init__(self, generator=None, name="noise_state", **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator = generator

    @property
    def variables(self):
        return [] if self.generator is None else [self.generator.state]

    def update_state(self, *args, **kwargs):
        pass

    def reset_state(self):
        pass

    def result(self):
        return {}


def _enclosing_compile_loss():
    """The Keras ``CompileLoss`` (``model.compile(loss=...)``) calling this loss, if any."""
    try:
        from keras.src.trainers.compile_utils import CompileLoss
    except ImportError:  # pragma: no cover - Keras moved it: fall back to the warning
        return None
    frame = sys._getframe(2)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), CompileLoss):
            return frame.f_locals["self"]
        frame = frame.f_back
    return None


def carry_noise_state(loss, generator):
    """On JAX, makes the trainer carry ``generator``'s state (see the module docstring).

    Called at every draw; a no-op on TensorFlow and PyTorch, and outside Keras' stateless
    scopes (eager calls advance the state in place). Inside one whose state does not hold
    ``generator`` yet: the loss is being built into a compiled model (Keras runs it
    symbolically before it gathers the training state), so it registers a `NoiseState`
    with the calling ``CompileLoss``; with no such caller (a hand-written stateless step)
    it warns that the noise will repeat unless ``generator`` is part of the state.
    """
    if keras.backend.backend() != "jax":
        return
    from keras.src.backend.common.stateless_scope import get_stateless_scope
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    scope = get_stateless_scope()
    if scope is None or scope.get_current_value(generator.state) is not None:
        return  # eager (updated in place), or carried by the caller's state
    compile_loss = _enclosing_compile_loss()
    carried = compile_loss is not None and any(
        isinstance(m, NoiseState) and m.generator is generator for m in compile_loss.metrics)
    if compile_loss is not None and not carried:
        carrier = NoiseState(generator, name=f"{loss.name}_noise_state")
        tracker = getattr(compile_loss, "_tracker", None)
        if tracker is not None:
            tracker.add_to_store("metrics", carrier)
        else:  # pragma: no cover - a Keras without CompileLoss' metric tracker
            compile_loss.metrics.append(carrier)
    if not in_symbolic_scope() and not getattr(loss, "_warned_noise", False):
        loss._warned_noise = True
        warnings.warn(
            f"{type(loss).__name__} {loss.name!r} draws noise inside a JAX stateless step "
            "whose state does not hold its seed generator: it draws the same noise at "
            "every step. Keras' fit/evaluate carry it when the loss is compiled into the "
            "model (model.compile(loss=...)) and the model is built by fit, evaluate or "
            "train_on_batch; a hand-written step must pass `loss.seed_generator.state` "
            "in and out of its state (e.g. as a metric variable).",
            stacklevel=3)


def repeat_rows(x, samples):
    """Repeats each row of a batch ``samples`` times (row ``b * S + s`` is row ``b``)."""
    return ops.repeat(x, samples, axis=0)


def estimate_as_gradient(value_and_gradient, y_pred):
    """A per-sample loss value whose gradient w.r.t. ``y_pred`` is a given estimate.

    Args:
        value_and_gradient: ``y_flat (B, m) -> (values (B,), gradient (B, m))``.
        y_pred: ``(B, ...)`` predictions.
    """
    @ops.custom_gradient
    def estimated(y_flat):
        values, gradient = value_and_gradient(y_flat)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream[:, None] * gradient

        return values, grad

    return estimated(flatten(y_pred))


class SampledLoss(keras.losses.Loss):
    """Base of the sampled losses: one ``_estimate`` serves training and `NewtonLoss`.

    Subclasses implement ``_estimate(y_true, y_flat, shape, hessian, eps) -> (values
    (B,), gradient (B, m), hessian (B, m, m) or None)``, ``eps`` ``(B, S, m)`` the noise
    of the call, and keep ``samples``, ``sigma``, ``seed`` and a ``seed_generator``.
    ``call`` returns the values with the estimated gradient (`estimate_as_gradient`);
    ``loss_derivatives`` is the provider protocol. The noise is drawn before the estimate
    (outside the custom-gradient function, so that the seed-generator update is a value
    of the step that draws it on every backend; see the module docstring for JAX).
    """

    def __init__(self, samples, sigma, seed, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.samples = _checks.check_positive_int("samples", samples)
        self.sigma = _checks.check_positive_float("sigma", sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _estimate(self, y_true, y_flat, shape, hessian, eps):
        raise NotImplementedError

    def _noise(self, y_flat):
        """The noise ``eps`` ``(B, S, m)`` of one call (carried by the trainer on JAX)."""
        carry_noise_state(self, self.seed_generator)
        return draw_noise(y_flat, self.samples, self.seed_generator)

    def call(self, y_true, y_pred):
        shape = ops.shape(y_pred)
        eps = self._noise(flatten(y_pred))
        return estimate_as_gradient(
            lambda y_flat: self._estimate(y_true, y_flat, shape, False, eps)[:2], y_pred)

    def loss_derivatives(self, y_true, y_pred, hessian):
        """Provider protocol: the sampled gradient and Hessian estimates."""
        y_flat = flatten(y_pred)
        _, gradient, hess = self._estimate(y_true, y_flat, ops.shape(y_pred), hessian,
                                           self._noise(y_flat))
        return LossDerivatives(gradient, hess)

    def get_config(self):
        config = super().get_config()
        config.update({"samples": self.samples, "sigma": self.sigma, "seed": self.seed})
        return config
