"""The Tikhonov scale: our per-sample lambda against a batch-mean loss's lambda.

Specification (keras_newton.tikhonov, docs/guide.md "Which lambda"): for a batch-mean loss
``L = 1/B sum_i l_i``, differentiated w.r.t. every ``y_i``, the Newton step with lambda' equals
ours at ``B lambda'`` for the Hessians, and for the Fisher it equals ``B`` times ours at
``B^2 lambda'``. Checked in float64 NumPy against `NewtonLoss.target` on softmax
cross-entropy, whose per-sample gradient and Hessian have closed forms.
"""

import numpy as np
import pytest

from keras_newton import NewtonLoss
from keras_newton.tikhonov import to_per_sample


def _softmax_ce_derivatives(labels, logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    g = p - np.eye(logits.shape[1])[labels]
    h = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])
    return g, h


def _batch_mean_step(g, h, curvature, lam):
    """``y - z*`` of the batch-mean loss: its gradients are ``g / B``, Hessians ``h / B``."""
    b, m = g.shape
    gm, hm = g / b, h / b
    eye = np.eye(m)
    if curvature == "hessian":
        return np.linalg.solve(hm.mean(0) + lam * eye, gm.T).T
    if curvature == "hessian_elementwise":
        return np.stack([np.linalg.solve(hm[i] + lam * eye, gm[i]) for i in range(b)])
    return np.linalg.solve(np.einsum("bi,bj->ij", gm, gm) / b + lam * eye, gm.T).T


@pytest.mark.parametrize("curvature, scale", [
    ("hessian", 1.0), ("hessian_elementwise", 1.0), ("fisher", None)])
@pytest.mark.parametrize("lam", [1e-3, 0.1, 10.0])
def test_batch_mean_lambda_maps_to_ours(rng, curvature, scale, lam):
    b, m = 8, 5
    logits = rng.normal(size=(b, m))
    labels = rng.integers(0, m, size=b)
    g, h = _softmax_ce_derivatives(labels, logits)
    theirs = _batch_mean_step(g, h, curvature, lam)
    ours_lam = to_per_sample(lam, curvature, b, "batch_mean")
    loss = NewtonLoss(_sparse_ce(), curvature=curvature, tikhonov=ours_lam)
    ours = logits - np.asarray(loss.target(labels, logits))
    scale = b if scale is None else scale  # their Fisher step is B times ours
    np.testing.assert_allclose(scale * ours, theirs, rtol=1e-4, atol=1e-9)


def _sparse_ce():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_conversion_values_and_errors():
    assert to_per_sample(0.5, "hessian", 10) == pytest.approx(5.0)
    assert to_per_sample(0.5, "fisher", 10) == pytest.approx(50.0)
    assert to_per_sample(np.float32(0.5), "hessian", np.int64(4)) == pytest.approx(2.0)
    assert to_per_sample(0.5, "fisher", 10, "per_sample") == 0.5
    for args, match in [((-1.0, "hessian", 2), "tikhonov"), ((1.0, "hess", 2), "curvature"),
                        ((1.0, "hessian", 0), "batch_size"),
                        ((1.0, "hessian", 2, "sum"), "convention")]:
        with pytest.raises(ValueError, match=match):
            to_per_sample(*args)
    with pytest.raises(TypeError, match="tikhonov"):
        to_per_sample("1", "hessian", 2)
