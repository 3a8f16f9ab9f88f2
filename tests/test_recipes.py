"""`keras_newton.recipes`: the benchmarks' losses from their settings.

Specification:
- each recipe returns ``(loss, base)``: for ``"baseline"`` the base loss itself, else
  ``NewtonLoss(base, curvature=variant, tikhonov=lambda)``; the serialized losses equal
  those of the objects the docstrings name, built by hand here;
- without a lambda the documented default is taken (the tables of the module);
- the classification base loss is softmax cross-entropy on logits (checked with NumPy);
- ``keras-newton bench`` (`keras_newton.app`) and the hypermodels build the very same losses
  from the same settings (one recipe, shared).
"""

import keras
import numpy as np
import pytest

from keras_newton import NewtonLoss, recipes
from keras_newton.layers import DiffSort, NeuralSort, RelaxedBellmanFord, SoftSort
from keras_newton.losses import (
    FenchelYoungLoss,
    PathLoss,
    RankingLoss,
    StochasticSmoothingLoss,
    hamming_path_loss,
)
from keras_newton.paths import nonnegative_shortest_path


def _unnamed(config):
    """A serialized object without its ``name`` entries (layers number theirs)."""
    if isinstance(config, dict):
        return {k: _unnamed(v) for k, v in config.items() if k != "name"}
    if isinstance(config, (list, tuple)):
        return [_unnamed(v) for v in config]
    return config


def _same(a, b):
    """The same class with the same settings: equal serialized configs."""
    assert _unnamed(keras.saving.serialize_keras_object(a)) == _unnamed(
        keras.saving.serialize_keras_object(b))


def _newton(base, variant, lam):
    return base if variant == "baseline" else NewtonLoss(base, curvature=variant,
                                                         tikhonov=lam)


@pytest.mark.parametrize("variant", recipes.RANKING_VARIANTS)
def test_ranking_loss_is_the_documented_composition(variant):
    cases = [
        ("neuralsort", dict(tau=0.5), NeuralSort(tau=0.5)),
        ("softsort", dict(tau=2.0, power=2.0), SoftSort(tau=2.0, power=2.0)),
        ("diffsort", dict(steepness=7.0, network="bitonic", distribution="logistic",
                          art_lambda=0.5),
         DiffSort(network="bitonic", steepness=7.0, distribution="logistic",
                  art_lambda=0.5)),
    ]
    for relaxation, settings, layer in cases:
        loss, base = recipes.ranking_loss(variant, relaxation, tikhonov=0.3, **settings)
        _same(base, RankingLoss(layer))
        _same(loss, _newton(RankingLoss(layer), variant, 0.3))
        assert (loss is base) == (variant == "baseline")
        _same(recipes.ranking_relaxation(relaxation, **settings), layer)
        if variant != "baseline":
            default, _ = recipes.ranking_loss(variant, relaxation, **settings)
            assert default.tikhonov == recipes.RANKING_TIKHONOV[relaxation][variant]


def test_ranking_relaxation_defaults():
    _same(recipes.ranking_relaxation(), NeuralSort(tau=1.0))
    _same(recipes.ranking_relaxation("softsort"), SoftSort(tau=1.0, power=1.0))
    _same(recipes.ranking_relaxation("diffsort"),
          DiffSort(network="odd_even", steepness=10.0, distribution="cauchy",
                   art_lambda=0.25))
    with pytest.raises(ValueError, match="relaxation"):
        recipes.ranking_relaxation("bubble")
    with pytest.raises(ValueError, match="variant"):
        recipes.ranking_loss("newton")


def _shortest_path_base(method, samples, seed, sigma, beta, absorbing, hessian_baseline):
    if method.startswith("bf"):
        _, loop, kind = method.split("_")
        return PathLoss(kind, relaxation=RelaxedBellmanFord(beta=beta, loop=loop,
                                                            absorbing_source=absorbing))
    if method == "smooth_loss":
        return StochasticSmoothingLoss(hamming_path_loss, samples=samples, sigma=sigma,
                                       seed=seed)
    if method == "smooth_algorithm":
        return StochasticSmoothingLoss(nonnegative_shortest_path, loss=PathLoss("l2"),
                                       samples=samples, sigma=sigma, seed=seed)
    return FenchelYoungLoss(nonnegative_shortest_path, samples=samples, sigma=sigma,
                            seed=seed, hessian_baseline=hessian_baseline)


@pytest.mark.parametrize("method", sorted(recipes.SHORTEST_PATH_METHODS))
def test_shortest_path_loss_is_the_documented_composition(method):
    for variant in recipes.SHORTEST_PATH_METHODS[method]:
        for absorbing, hb in ((False, "unperturbed"), (True, "none")):
            loss, base = recipes.shortest_path_loss(
                method, variant, samples=3, seed=5, sigma=0.2, beta=4.0, tikhonov=0.7,
                absorbing_source=absorbing, hessian_baseline=hb)
            expected = _shortest_path_base(method, 3, 5, 0.2, 4.0, absorbing, hb)
            _same(base, expected)
            _same(loss, _newton(expected, variant, 0.7))
        if variant != "baseline":
            loss, _ = recipes.shortest_path_loss(method, variant)
            key = "bf" if method.startswith("bf") else method
            assert loss.tikhonov == recipes.SHORTEST_PATH_TIKHONOV[key]
    with pytest.raises(ValueError, match="variant"):
        recipes.shortest_path_loss("smooth_algorithm", "hessian")


def test_shortest_path_methods_and_sampling():
    assert set(recipes.SAMPLED_METHODS) < set(recipes.SHORTEST_PATH_METHODS)
    assert {m for m in recipes.SHORTEST_PATH_METHODS if not m.startswith("bf")} == set(
        recipes.SAMPLED_METHODS)
    with pytest.raises(ValueError, match="method"):
        recipes.shortest_path_loss("dijkstra")


def test_classification_loss_is_softmax_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10)).astype("float32")
    labels = rng.integers(0, 10, 6)
    loss, base = recipes.classification_loss()
    assert loss is base
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(6), labels].mean()
    np.testing.assert_allclose(float(base(labels, logits)), expected, rtol=1e-5)
    for variant in recipes.CLASSIFICATION_VARIANTS[1:]:
        loss, base = recipes.classification_loss(variant, tikhonov=0.25)
        _same(loss, NewtonLoss(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True), curvature=variant,
            tikhonov=0.25))
        assert recipes.classification_loss(variant)[0].tikhonov == (
            recipes.CLASSIFICATION_TIKHONOV)


def test_the_bench_builds_the_recipes_losses():
    from keras_newton.app import ranking, shortest_path

    config = ranking.make_config(relaxation="softsort", tau=0.5, tikhonov=0.2)
    for variant in ("baseline", "fisher"):
        loss, base = ranking.make_loss(config, variant)
        expected, _ = recipes.ranking_loss(variant, "softsort", 0.2, tau=0.5)
        _same(loss, expected)
    config = shortest_path.make_config(method="smooth_loss", sigma=0.3, tikhonov=0.4)
    _same(shortest_path.make_loss(config, "hessian", 3, 1),
          recipes.shortest_path_loss("smooth_loss", "hessian", samples=3, seed=1,
                                     sigma=0.3, tikhonov=0.4)[0])


def test_the_hypermodels_build_the_recipes_losses():
    kt = pytest.importorskip("keras_tuner")
    from keras_newton import models

    hp = kt.HyperParameters()
    hp.values.update(curvature="hessian", tikhonov=0.5, steepness=6.0, learning_rate=1e-3)
    model = models.RankingHyperModel(n=3, relaxation="diffsort").build(hp)
    _same(model.loss, recipes.ranking_loss("hessian", "diffsort", 0.5, steepness=6.0)[0])
    hp = kt.HyperParameters()
    hp.values.update(curvature="fisher", tikhonov=0.5, sigma=0.2, learning_rate=1e-3)
    model = models.ShortestPathHyperModel("fenchel_young", samples=4, grid=3,
                                          input_shape=(24, 24, 3), seed=2).build(hp)
    _same(model.loss, recipes.shortest_path_loss("fenchel_young", "fisher", samples=4,
                                                 seed=2, sigma=0.2, tikhonov=0.5)[0])
