"""Loads a saved ``.keras`` model in a new Python process that imports only keras_newton.

The child process does nothing but ``import keras_newton`` and
``keras.saving.load_model(path)`` (with its compiled loss and metrics), then reports what
it loaded: the loss as Keras serializes it, and the model's predictions on inputs given
as a ``.npy`` file. Nothing of the application (`keras_newton.app`) or of the tests is
imported there, so the model loads only if ``import keras_newton`` registered every object
it holds.
"""

import json
import os
import subprocess
import sys

import numpy as np

CHILD = r"""
import json
import sys

import keras
import keras_newton  # noqa: F401  (the only keras_newton import)
import numpy as np

path, inputs, out = sys.argv[1:4]
model = keras.saving.load_model(path)
report = {
    "loss": keras.saving.serialize_keras_object(model.loss),
    "app_modules": sorted(m for m in sys.modules if m.startswith("keras_newton.app")),
}
if inputs != "-":
    np.save(out + ".npy", model.predict(np.load(inputs), batch_size=100, verbose=0))
with open(out + ".json", "w") as f:
    json.dump(report, f, default=str)
"""


def load_in_fresh_process(model_path, work_dir, inputs=None):
    """``(report, predictions)`` of ``model_path`` loaded in a new process.

    ``report["loss"]`` is the loaded compiled loss, serialized; ``predictions`` the model's
    outputs on ``inputs`` (``None`` without inputs). Raises ``AssertionError`` with the
    child's stderr when it fails.
    """
    work_dir = str(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    stem = os.path.join(work_dir, "fresh_" + os.path.basename(model_path))
    inputs_path = "-"
    if inputs is not None:
        inputs_path = stem + "_inputs.npy"
        np.save(inputs_path, np.asarray(inputs))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    proc = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(model_path),
                           inputs_path, stem], capture_output=True, text=True, cwd=work_dir,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(stem + ".json") as f:
        report = json.load(f)
    predictions = np.load(stem + ".npy") if inputs is not None else None
    return report, predictions


def registered_names(serialized):
    """Every ``registered_name`` (and registered function) in a serialized object."""
    names = set()
    if isinstance(serialized, dict):
        if serialized.get("class_name") == "function" and isinstance(
                serialized.get("config"), str):
            names.add(serialized["config"])
        name = serialized.get("registered_name")
        if isinstance(name, str) and name != "function":
            names.add(name)
        for value in serialized.values():
            names |= registered_names(value)
    elif isinstance(serialized, list):
        for value in serialized:
            names |= registered_names(value)
    return names
