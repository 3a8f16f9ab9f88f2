"""Keras layers: differentiable sorting relaxations and relaxed shortest paths.

One import line per layer module; the layers live in `keras_newton.sorting` and
`keras_newton.paths`.
"""

from keras_newton.sorting.diffsort import DiffSort  # noqa: F401
from keras_newton.sorting.neuralsort import NeuralSort  # noqa: F401
from keras_newton.sorting.softsort import SoftSort  # noqa: F401
from keras_newton.paths.bellman_ford import RelaxedBellmanFord  # noqa: F401
from keras_newton.paths.exact import ShortestPath  # noqa: F401
