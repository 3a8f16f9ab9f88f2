"""Run as a script: one SGD step under MirroredStrategy on 2 logical CPUs vs. one device.

Prints JSON ``{curvature: max |w_mirrored - w_single|, ...}`` plus the same distance for a
run whose curvature is *not* reduced across replicas (to show the check can fail).
Separate process because logical devices must be configured before TensorFlow starts.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras_newton as kn  # noqa: E402
from distribution_worker import quartic_loss as base_loss  # noqa: E402
from keras_newton.curvature import autodiff  # noqa: E402


def build(weights=None):
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)]
    )
    if weights is not None:
        model.set_weights(weights)
    return model


def train_one_step(strategy, weights, curvature, x, y):
    with strategy.scope():
        model = build(weights)
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=kn.NewtonLoss(base_loss, curvature=curvature, tikhonov=0.05),
        )
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype("float32")
    # Very different halves, so per-replica curvature differs from the global one.
    y = np.concatenate([rng.normal(size=(4, 3)), 3 + rng.normal(size=(4, 3))]).astype(
        "float32"
    )
    keras.utils.set_random_seed(0)
    weights = build().get_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.get_strategy()
    out = {"replicas": mirrored.num_replicas_in_sync}
    for curvature in ("hessian", "fisher"):
        a = train_one_step(mirrored, weights, curvature, x, y)
        b = train_one_step(single, weights, curvature, x, y)
        out[curvature] = max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))
        out[curvature + "_moved"] = max(
            float(np.max(np.abs(u - v))) for u, v in zip(a, weights)
        )
    # Control: without the cross-replica sum, each replica uses its own half-batch curvature.
    autodiff.cross_replica_sum = lambda values: values
    a = train_one_step(mirrored, weights, "hessian", x, y)
    b = train_one_step(single, weights, "hessian", x, y)
    out["hessian_without_allreduce"] = max(
        float(np.max(np.abs(u - v))) for u, v in zip(a, b)
    )
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
