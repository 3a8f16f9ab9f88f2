from keras_newton.models.classification import classification_model, lenet5, mlp  # noqa: F401
from keras_newton.models.paths import comb_resnet18  # noqa: F401
