from keras_newton.datasets.mnist import load_mnist  # noqa: F401
