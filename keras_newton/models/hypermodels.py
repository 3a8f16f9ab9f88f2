"""KerasTuner hypermodels of the three benchmarks: classification, ranking, shortest paths.

Each hypermodel builds the benchmark's model compiled with a loss whose hyperparameters are
searched by KerasTuner:

- ``curvature``: ``"baseline"`` (the base loss itself) or a `keras_newton.NewtonLoss`
  curvature kind (``"hessian"``, ``"hessian_elementwise"``, ``"fisher"``);
- ``tikhonov``: the ``lambda`` of ``(C + lambda I)``, on a log scale (the paper's grid is
  ``1e-3 .. 1e3``, Petersen et al., NeurIPS 2024, Section 5); active only for Newton
  curvatures (a KerasTuner conditional scope on ``curvature``). It is read in the
  hypermodel's ``tikhonov_convention``: ``"per_sample"`` (the default: the value goes to
  `keras_newton.NewtonLoss` as it is) or ``"batch_mean"`` (the lambda of a batch-mean loss
  over ``batch_size`` samples, converted by `keras_newton.tikhonov.to_per_sample`: times
  ``batch_size`` for the Hessians, ``batch_size**2`` for the Fisher), which is how
  ``keras-newton tune`` searches the paper's range;
- the relaxation's temperature or steepness (``tau`` of NeuralSort / SoftSort,
  ``steepness`` of DiffSort, ``beta`` of relaxed Bellman-Ford, ``sigma`` of the sampled
  shortest-path losses), on a log scale;
- ``learning_rate``, on a log scale.

Every range may be fixed to a single number instead. The losses are made by the
benchmarks' recipes (`keras_newton.recipes`: `ranking_loss`, `shortest_path_loss`,
`classification_loss`), which ``keras-newton bench`` uses too, so a tuned configuration
means the same thing there. The command ``keras-newton tune {classification,ranking,
shortest-path}`` (the application, `keras_newton.app.tune`) runs a search with any of
KerasTuner's RandomSearch, BayesianOptimization or Hyperband.

This module needs KerasTuner (and TensorBoard, which KerasTuner imports on TensorFlow):
``pip install 'keras-newton[tune]'``. `keras_newton.models` imports it only when one of the
hypermodels is asked for.

Example:

```python
import keras_tuner
from keras_newton.models import RankingHyperModel

hypermodel = RankingHyperModel(n=5, relaxation="neuralsort")
tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=20)
tuner.search(train_sets, steps_per_epoch=200, epochs=5, validation_data=val_sets)
best = tuner.get_best_models(1)[0]
```
"""

import math

import keras

from keras_newton import recipes
from keras_newton import tikhonov as tikhonov_scale
from keras_newton.callbacks import PathValidation
from keras_newton.metrics.base_loss import BaseLoss
from keras_newton.metrics.ranking import ElementwiseRankAccuracy
from keras_newton.metrics.ranking import ExactMatchAccuracy
from keras_newton.models.classification import MODELS as CLASSIFICATION_MODELS
from keras_newton.models.classification import classification_model
from keras_newton.models.paths import comb_resnet18
from keras_newton.models.ranking import multi_digit_cnn

try:
    import keras_tuner
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "keras_newton.models.hypermodels needs KerasTuner: pip install 'keras-newton[tune]' "
        "(keras-tuner and tensorboard)."
    ) from error

__all__ = ["ClassificationHyperModel", "PathValidation", "RankingHyperModel",
           "ShortestPathHyperModel"]

#: The paper's Tikhonov grid, ``1e-3 .. 1e3`` (log scale).
TIKHONOV_RANGE = (1e-3, 1e3)
NEWTON_CURVATURES = ("hessian", "hessian_elementwise", "fisher")


def _check_range(name, spec):
    """A positive number (fixed) or ``(low, high)`` with ``0 < low <= high``."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not (math.isfinite(spec) and spec > 0):
            raise ValueError(f"{name} must be a positive finite number or a (low, high) "
                             f"range; received {spec!r}.")
        return float(spec)
    if (isinstance(spec, (tuple, list)) and len(spec) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)):
        low, high = (float(v) for v in spec)
        if math.isfinite(low) and math.isfinite(high) and 0 < low <= high:
            return (low, high)
    raise ValueError(f"{name} must be a positive number or a (low, high) range with "
                     f"0 < low <= high; received {spec!r}.")


def _log_float(hp, name, spec):
    """``hp.Fixed`` for a number, a log-scale ``hp.Float`` for a range."""
    if isinstance(spec, float):
        return hp.Fixed(name, spec)
    low, high = spec
    if low == high:
        return hp.Fixed(name, low)
    return hp.Float(name, low, high, sampling="log")


def _check_curvatures(curvatures, allowed):
    if isinstance(curvatures, str):
        curvatures = [curvatures]
    curvatures = list(curvatures or ())
    bad = [c for c in curvatures if c not in allowed]
    if not curvatures or bad or len(set(curvatures)) != len(curvatures):
        raise ValueError(f"curvatures must be a non-empty list of distinct names from "
                         f"{allowed}; received {curvatures!r}.")
    return curvatures


class _NewtonHyperModel(keras_tuner.HyperModel):
    """Shared hyperparameters: curvature (with the baseline), tikhonov, learning rate."""

    #: the metric the search maximises; subclasses set it.
    objective_name = None

    def __init__(self, curvatures, tikhonov, learning_rate, allowed, name, tunable,
                 tikhonov_convention="per_sample", batch_size=None):
        super().__init__(name=name, tunable=tunable)
        self.curvatures = _check_curvatures(curvatures, allowed)
        self.tikhonov = _check_range("tikhonov", tikhonov)
        self.learning_rate = _check_range("learning_rate", learning_rate)
        if tikhonov_convention not in tikhonov_scale.CONVENTIONS:
            raise ValueError(f"tikhonov_convention must be one of "
                             f"{tikhonov_scale.CONVENTIONS}; received {tikhonov_convention!r}.")
        if tikhonov_convention == "batch_mean" and (
                isinstance(batch_size, bool) or not isinstance(batch_size, int)
                or batch_size < 1):
            raise ValueError("batch_size (samples per training batch) must be a positive "
                             "integer with tikhonov_convention='batch_mean'; received "
                             f"{batch_size!r}.")
        self.tikhonov_convention = tikhonov_convention
        self.batch_size = batch_size

    @property
    def objective(self):
        """The `keras_tuner.Objective` to pass to a tuner (validation metric, maximised)."""
        return keras_tuner.Objective(self.objective_name, direction="max")

    def _curvature(self, hp):
        """``(variant, tikhonov)``; tikhonov is ``None`` for the baseline."""
        variant = hp.Choice("curvature", self.curvatures)
        newton = [c for c in self.curvatures if c != "baseline"]
        tikhonov = None
        if newton:
            with hp.conditional_scope("curvature", newton):
                tikhonov = _log_float(hp, "tikhonov", self.tikhonov)
        if variant == "baseline":
            return variant, None
        # The searched value is in the hypermodel's convention; the loss takes ours.
        return variant, tikhonov_scale.to_per_sample(
            tikhonov, variant, self.batch_size or 1, self.tikhonov_convention)

    def _config(self):
        return {"curvatures": list(self.curvatures), "tikhonov": self.tikhonov,
                "learning_rate": self.learning_rate,
                "tikhonov_convention": self.tikhonov_convention,
                "batch_size": self.batch_size}


class ClassificationHyperModel(_NewtonHyperModel):
    """Hypermodel of MNIST classification (paper Table 4) with softmax cross-entropy.

    Builds the Table 4 model ``model`` (`keras_newton.models.classification_model`, raw
    0..255 pixels in, logits out) compiled with ``SparseCategoricalCrossentropy(
    from_logits=True)`` (``curvature="baseline"``) or its Newton loss

        z*_i = y_i - (C + lambda I)^-1 g_i,   loss_i = 1/2 ||z*_i - y_i||^2

    (Petersen et al., NeurIPS 2024, Definitions 1-3), with metrics ``base_loss`` and
    ``accuracy``. Searched: ``curvature``, ``tikhonov`` (log, conditional on a Newton
    curvature) and ``learning_rate`` (log). The objective is ``val_accuracy``.

    Args:
        model: ``"M1"`` .. ``"M5"``.
        optimizer: ``"sgd"`` or ``"adam"``.
        curvatures: the choices of ``curvature``, from ``"baseline"``, ``"hessian"``,
            ``"hessian_elementwise"``, ``"fisher"``.
        tikhonov: ``(low, high)`` log range or a fixed number.
        learning_rate: ``(low, high)`` log range or a fixed number; default ``(1e-3, 1)``
            for SGD and ``(1e-4, 1e-2)`` for Adam.
        name, tunable: as in `keras_tuner.HyperModel`.
        tikhonov_convention: ``"per_sample"`` (default) or ``"batch_mean"``: the scale in
            which ``tikhonov`` is searched (see the module docstring).
        batch_size: samples per training batch; needed with ``"batch_mean"``.

    Example:

    ```python
    hypermodel = ClassificationHyperModel("M1", optimizer="sgd")
    tuner = keras_tuner.RandomSearch(hypermodel, hypermodel.objective, max_trials=10)
    tuner.search(x_train, y_train, epochs=2, validation_data=(x_val, y_val))
    ```
    """

    objective_name = "val_accuracy"

    def __init__(self, model="M1", optimizer="sgd",
                 curvatures=("baseline", "hessian_elementwise", "hessian", "fisher"),
                 tikhonov=TIKHONOV_RANGE, learning_rate=None, name=None, tunable=True,
                 tikhonov_convention="per_sample", batch_size=None):
        if not isinstance(model, str) or model.upper() not in CLASSIFICATION_MODELS:
            raise ValueError(f"model must be one of {', '.join(CLASSIFICATION_MODELS)}; "
                             f"received {model!r}.")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam'; received {optimizer!r}.")
        if learning_rate is None:
            learning_rate = (1e-3, 1.0) if optimizer == "sgd" else (1e-4, 1e-2)
        super().__init__(curvatures, tikhonov, learning_rate,
                         ("baseline",) + NEWTON_CURVATURES, name, tunable,
                         tikhonov_convention, batch_size)
        self.model = model.upper()
        self.optimizer = optimizer

    def build(self, hp):
        """The compiled Table 4 model for the trial's hyperparameters."""
        variant, tikhonov = self._curvature(hp)
        lr = _log_float(hp, "learning_rate", self.learning_rate)
        loss, base = recipes.classification_loss(variant, tikhonov)
        optimizer = (keras.optimizers.SGD(lr) if self.optimizer == "sgd"
                     else keras.optimizers.Adam(lr))
        model = classification_model(self.model)
        model.compile(optimizer, loss, metrics=[
            BaseLoss(base), keras.metrics.SparseCategoricalAccuracy("accuracy")])
        return model

    def get_config(self):
        """The constructor arguments (for the summary of a search)."""
        return dict(self._config(), model=self.model, optimizer=self.optimizer)


class RankingHyperModel(_NewtonHyperModel):
    """Hypermodel of four-digit MNIST ranking (paper Table 1).

    Builds `keras_newton.models.multi_digit_cnn` ``(n)`` compiled with the ranking loss of a
    sorting relaxation, ``BCE(P(s), Q)`` (`keras_newton.losses.RankingLoss`), as the
    baseline or inside a `keras_newton.NewtonLoss`; Adam; metrics ``base_loss``,
    ``exact_match`` and ``elementwise_accuracy``. The loss comes from
    `keras_newton.recipes.ranking_loss`. Searched: ``curvature``, ``tikhonov`` (log,
    conditional), the relaxation's ``tau`` (NeuralSort, SoftSort: temperature) or
    ``steepness`` (DiffSort), and ``learning_rate`` (log). The objective is
    ``val_exact_match``.

    Args:
        n: items per set.
        relaxation: ``"neuralsort"``, ``"softsort"`` or ``"diffsort"``.
        curvatures: the choices of ``curvature`` (``"baseline"`` and Newton kinds).
        tikhonov: ``(low, high)`` log range or a fixed number; default ``(1e-3, 1e3)``.
        learning_rate: ``(low, high)`` log range or a fixed number.
        tau: NeuralSort / SoftSort temperature range or value.
        steepness: DiffSort steepness range or value.
        network, distribution: DiffSort's sorting network and swap distribution.
        name, tunable: as in `keras_tuner.HyperModel`.
        tikhonov_convention: ``"per_sample"`` (default) or ``"batch_mean"``: the scale in
            which ``tikhonov`` is searched (see the module docstring).
        batch_size: samples per training batch; needed with ``"batch_mean"``.

    Example:

    ```python
    hypermodel = RankingHyperModel(n=5, relaxation="diffsort")
    tuner = keras_tuner.Hyperband(hypermodel, hypermodel.objective, max_epochs=10)
    tuner.search(train_sets, steps_per_epoch=500, validation_data=val_sets)
    ```
    """

    objective_name = "val_exact_match"

    def __init__(self, n=5, relaxation="neuralsort",
                 curvatures=("baseline", "hessian", "fisher"), tikhonov=TIKHONOV_RANGE,
                 learning_rate=(1e-4, 1e-2), tau=(0.1, 10.0), steepness=(2.0, 100.0),
                 network="odd_even", distribution="cauchy", name=None, tunable=True,
                 tikhonov_convention="per_sample", batch_size=None):
        if relaxation not in recipes.RANKING_RELAXATIONS:
            raise ValueError(f"relaxation must be one of {recipes.RANKING_RELAXATIONS}; "
                             f"received {relaxation!r}.")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n (items per set) must be an integer >= 2; received {n!r}.")
        super().__init__(curvatures, tikhonov, learning_rate, recipes.RANKING_VARIANTS,
                         name, tunable, tikhonov_convention, batch_size)
        self.n = n
        self.relaxation = relaxation
        self.tau = _check_range("tau", tau)
        self.steepness = _check_range("steepness", steepness)
        self.network = network
        self.distribution = distribution

    def build(self, hp):
        """The compiled ranking CNN for the trial's hyperparameters."""
        variant, tikhonov = self._curvature(hp)
        settings = {"network": self.network, "distribution": self.distribution}
        if self.relaxation == "diffsort":
            settings["steepness"] = _log_float(hp, "steepness", self.steepness)
        else:
            settings["tau"] = _log_float(hp, "tau", self.tau)
        lr = _log_float(hp, "learning_rate", self.learning_rate)
        loss, base = recipes.ranking_loss(variant, self.relaxation, tikhonov, **settings)
        model = multi_digit_cnn(self.n)
        model.compile(keras.optimizers.Adam(lr), loss, metrics=[
            BaseLoss(base), ExactMatchAccuracy(), ElementwiseRankAccuracy()])
        return model

    def get_config(self):
        """The constructor arguments (for the summary of a search)."""
        return dict(self._config(), n=self.n, relaxation=self.relaxation, tau=self.tau,
                    steepness=self.steepness, network=self.network,
                    distribution=self.distribution)


class ShortestPathHyperModel(_NewtonHyperModel):
    """Hypermodel of Warcraft shortest paths (paper Tables 2-3).

    Builds `keras_newton.models.comb_resnet18` (map image -> grid costs) compiled with the
    loss of one of the paper's methods (`keras_newton.recipes.shortest_path_loss`:
    relaxed Bellman-Ford with an L1 / squared-L2 path loss, stochastic smoothing of the loss
    or of the algorithm, or a Fenchel-Young loss), as the baseline or inside a
    `keras_newton.NewtonLoss`; Adam at a constant learning rate; metric ``base_loss``.
    Searched: ``curvature`` (among the method's variants), ``tikhonov`` (log, conditional),
    ``beta`` (inverse temperature of relaxed Bellman-Ford) or ``sigma`` (noise scale of the
    sampled methods), and ``learning_rate`` (log).

    Training takes the true paths ``(B, H, W)`` as targets. `fit` evaluates the exact
    shortest path of the predicted validation costs after every epoch
    (`keras_newton.metrics.path_metrics`) and logs ``val_perfect_match`` (the objective),
    ``val_optimal_cost`` (both in percent) and ``val_cost_ratio``: pass
    ``validation_data=(images, keras_newton.paths.pack_path_targets(paths, costs))``.

    Args:
        method: a key of `keras_newton.recipes.SHORTEST_PATH_METHODS` (``"bf_for_l1"``,
            ``"smooth_loss"``, ``"fenchel_young"``, ...).
        samples: samples per prediction of the sampled methods.
        curvatures: the choices of ``curvature``; default: every variant of ``method``.
        tikhonov: ``(low, high)`` log range or a fixed number.
        learning_rate: ``(low, high)`` log range or a fixed number.
        beta: relaxed Bellman-Ford inverse temperature, range or value.
        sigma: noise scale of the sampled methods, range or value.
        grid, input_shape: cost grid side and image shape of the model (12 and
            ``(96, 96, 3)`` for Warcraft).
        seed: seed of the sampled losses' noise.
        name, tunable: as in `keras_tuner.HyperModel`.
        tikhonov_convention: ``"per_sample"`` (default) or ``"batch_mean"``: the scale in
            which ``tikhonov`` is searched (see the module docstring).
        batch_size: samples per training batch; needed with ``"batch_mean"``.

    Example:

    ```python
    hypermodel = ShortestPathHyperModel("fenchel_young", samples=10)
    tuner = keras_tuner.BayesianOptimization(hypermodel, hypermodel.objective, max_trials=20)
    tuner.search(maps, paths, batch_size=70, epochs=10,
                 validation_data=(val_maps, pack_path_targets(val_paths, val_costs)))
    ```
    """

    objective_name = "val_perfect_match"

    def __init__(self, method="fenchel_young", samples=10, curvatures=None,
                 tikhonov=TIKHONOV_RANGE, learning_rate=(1e-4, 1e-2), beta=(1.0, 100.0),
                 sigma=(0.01, 1.0), grid=12, input_shape=(96, 96, 3), seed=0, name=None,
                 tunable=True, tikhonov_convention="per_sample", batch_size=None):
        if method not in recipes.SHORTEST_PATH_METHODS:
            raise ValueError(f"method must be one of {sorted(recipes.SHORTEST_PATH_METHODS)}; "
                             f"received {method!r}.")
        allowed = recipes.SHORTEST_PATH_METHODS[method]
        super().__init__(curvatures or allowed, tikhonov, learning_rate, allowed, name,
                         tunable, tikhonov_convention, batch_size)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer; received {samples!r}.")
        self.method = method
        self.samples = samples
        self.beta = _check_range("beta", beta)
        self.sigma = _check_range("sigma", sigma)
        self.grid = int(grid)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.seed = int(seed)

    def build(self, hp):
        """The compiled cost model for the trial's hyperparameters."""
        variant, tikhonov = self._curvature(hp)
        settings = {}
        if self.method.startswith("bf"):
            settings["beta"] = _log_float(hp, "beta", self.beta)
        else:
            settings["sigma"] = _log_float(hp, "sigma", self.sigma)
        lr = _log_float(hp, "learning_rate", self.learning_rate)
        samples = self.samples if self.method in recipes.SAMPLED_METHODS else None
        loss, base = recipes.shortest_path_loss(self.method, variant, samples=samples,
                                                seed=self.seed, tikhonov=tikhonov,
                                                **settings)
        model = comb_resnet18(self.grid, self.input_shape)
        model.compile(keras.optimizers.Adam(lr), loss, metrics=[BaseLoss(base)])
        return model

    def fit(self, hp, model, *args, validation_data=None, callbacks=None, **kwargs):
        """`model.fit`, with exact-solver validation metrics logged after every epoch.

        ``validation_data=(images, packed)``, ``packed`` from
        `keras_newton.paths.pack_path_targets` (paths and true costs), is evaluated by a
        callback, not by Keras: the sampled losses cannot take packed targets.
        """
        callbacks = list(callbacks or [])
        if validation_data is not None:
            callbacks.insert(0, PathValidation(*validation_data))
        return model.fit(*args, callbacks=callbacks, **kwargs)

    def get_config(self):
        """The constructor arguments (for the summary of a search)."""
        return dict(self._config(), method=self.method, samples=self.samples,
                    beta=self.beta, sigma=self.sigma, grid=self.grid,
                    input_shape=list(self.input_shape), seed=self.seed)
