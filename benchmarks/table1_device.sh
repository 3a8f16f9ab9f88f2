#!/usr/bin/env bash
# The paper's Table 1 NeuralSort rows on a GPU machine that has JAX but no TensorFlow, no
# Keras and no package index (docs/reproducing.md, "Table 1 on one GPU in ten minutes").
#
#   bash benchmarks/table1_device.sh prepare [--mnist PATH]   # here: wheels (+ MNIST) into .device/
#   bash benchmarks/table1_device.sh run [--budget S] [--tiny] [--out DIR] [more options]
#
# prepare downloads, for the device's Python (3.12, manylinux x86-64; override with
# PYTHON_VERSION), the wheels of what the device lacks: Keras (the version installed here)
# and its dependencies namex and optree, and builds this package's wheel; with --mnist it
# copies full MNIST to .device/mnist.npz. `.device/` is git-ignored; carry it to the device.
#
# run installs .device/wheels (if there and Keras is not installed) into a scratch folder, selects the JAX backend and
# runs benchmarks/table1_device.py with .device/mnist.npz (if there), writing results.json,
# table.txt and convergence.png under $OUT (the device tool's output folder), or --out DIR.
# --tiny is the seconds-long CPU configuration CI runs (bundled MNIST subset).
set -euo pipefail
cd "$(dirname "$0")/.."
here="$(pwd)"
python="${PYTHON:-python3}"

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

prepare() {
    local mnist=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --mnist) mnist="${2:?--mnist needs a path}"; shift 2 ;;
            *) echo "table1_device.sh prepare: unknown option $1" >&2; exit 2 ;;
        esac
    done
    local keras_version
    keras_version="$("$python" -c 'import keras; print(keras.__version__)')"
    rm -rf .device/wheels
    mkdir -p .device/wheels
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 \
        -d .device/wheels "keras==$keras_version" namex optree
    "$python" -m pip wheel --quiet --no-deps -w .device/wheels .
    if [ -n "$mnist" ]; then
        [ -f "$mnist" ] || { echo "table1_device.sh: no file $mnist" >&2; exit 2; }
        cp "$mnist" .device/mnist.npz
    fi
    echo "prepared .device/ ($(du -sh .device | cut -f1)):"
    ls -1 .device .device/wheels
    echo "on the device: bash benchmarks/table1_device.sh run   (carry .device)"
}

run() {
    local out="${OUT:-results/table1}" tiny="" extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out="${2:?--out needs a folder}"; shift 2 ;;
            --tiny) tiny="--tiny"; shift ;;
            *) extra+=("$1"); shift ;;
        esac
    done
    # The wheels are for the device's Python; where Keras is installed they are not needed.
    if ! "$python" -c "import keras" >/dev/null 2>&1 && ls .device/wheels/*.whl >/dev/null 2>&1; then
        local site="${TMPDIR:-/tmp}/keras-newton-site"
        "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$site" .device/wheels/*.whl
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1
    local data=()
    if [ -z "$tiny" ] && [ -f .device/mnist.npz ]; then
        data=(--data "$here/.device/mnist.npz")
    fi
    mkdir -p "$out"
    "$python" benchmarks/table1_device.py --out "$out" $tiny "${data[@]}" "${extra[@]}" \
        2>&1 | tee "$out/log.txt"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
