"""Differentiable sorting: NeuralSort, SoftSort and differentiable sorting networks.

Each relaxation is a Keras layer mapping scores ``(B, n)`` to a relaxed permutation
matrix ``(B, n, n)`` with rows = ascending ranks (docs/conventions.md).
"""

from keras_newton.sorting.diffsort import DiffSort  # noqa: F401
from keras_newton.sorting.distributions import DISTRIBUTIONS  # noqa: F401
from keras_newton.sorting.networks import NETWORKS  # noqa: F401
from keras_newton.sorting.neuralsort import NeuralSort  # noqa: F401
from keras_newton.sorting.permutation import permutation_matrix  # noqa: F401
from keras_newton.sorting.permutation import stable_ranks  # noqa: F401
from keras_newton.sorting.softsort import SoftSort  # noqa: F401
