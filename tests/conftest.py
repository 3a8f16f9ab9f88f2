import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def full_mnist_path():
    """Full MNIST (Keras' ``mnist.npz``) named by ``$KERAS_NEWTON_MNIST``, else ``None``.

    Tests that need full MNIST skip without it; nothing else is searched.
    """
    path = os.environ.get("KERAS_NEWTON_MNIST")
    return path if path and os.path.isfile(path) else None


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def fd_gradient(f, y, h=1e-5):
    """Central finite-difference gradient of scalar ``f`` at float64 vector ``y``."""
    y = np.asarray(y, np.float64)
    g = np.zeros_like(y)
    for j in range(y.size):
        e = np.zeros_like(y)
        e[j] = h
        g[j] = (f(y + e) - f(y - e)) / (2 * h)
    return g


def fd_hessian(f, y, h=1e-4):
    """Central finite-difference Hessian of scalar ``f`` at float64 vector ``y``."""
    y = np.asarray(y, np.float64)
    m = y.size
    hess = np.zeros((m, m))
    for j in range(m):
        for k in range(m):
            ej = np.zeros(m)
            ek = np.zeros(m)
            ej[j] = h
            ek[k] = h
            hess[j, k] = (
                f(y + ej + ek) - f(y + ej - ek) - f(y - ej + ek) + f(y - ej - ek)
            ) / (4 * h * h)
    return 0.5 * (hess + hess.T)
