"""Keras layers: differentiable sorting relaxations and relaxed shortest paths.

One import line per layer module; the layers live in `keras_newton.sorting` and
`keras_newton.paths`.
"""
