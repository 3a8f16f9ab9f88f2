from keras_newton.models.classification import classification_model, lenet5, mlp  # noqa: F401
