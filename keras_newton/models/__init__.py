from keras_newton.models.ranking import multi_digit_cnn  # noqa: F401
from keras_newton.models.classification import classification_model, lenet5, mlp  # noqa: F401
from keras_newton.models.paths import comb_resnet18  # noqa: F401

_HYPERMODELS = ("ClassificationHyperModel", "RankingHyperModel", "ShortestPathHyperModel")


def __getattr__(name):
    """KerasTuner hypermodels, imported on first use: the core needs no keras_tuner."""
    if name in _HYPERMODELS:
        from keras_newton.models import hypermodels

        return getattr(hypermodels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
