from keras_newton.datasets import four_digit  # noqa: F401
from keras_newton.datasets.four_digit import FourDigitSampler, four_digit_datasets  # noqa: F401
from keras_newton.datasets.mnist import load_mnist  # noqa: F401
from keras_newton.datasets.warcraft import generate_warcraft, load_warcraft  # noqa: F401
from keras_newton.datasets.warcraft import normalise_warcraft  # noqa: F401
from keras_newton.datasets.warcraft import read_warcraft_arrays  # noqa: F401
