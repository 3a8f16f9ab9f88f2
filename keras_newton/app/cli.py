"""The ``keras-newton`` command.

    keras-newton bench classification [options]   # paper Table 4 (MNIST)
    keras-newton bench ranking [options]          # paper Table 1 (four-digit MNIST)
    keras-newton bench shortest-path [options]    # paper Tables 2-3 (Warcraft)
    keras-newton data warcraft --out DIR          # procedural Warcraft look-alike
    keras-newton tune ranking [options]           # KerasTuner search (also shortest-path,
                                                  #   classification)
    keras-newton export ranker --model M.keras --out DIR/NAME/VERSION  # TF-Serving

Each command lives in its own module of this package, which exposes
``register(subparsers)`` adding its parser with ``set_defaults(func=run)``, and is listed
in `_BENCH_MODULES`, `_DATA_MODULES`, `_TUNE_MODULES` or `_EXPORT_MODULES`
below.
"""

import argparse
import importlib
import sys

# Modules of keras_newton.app registering a `keras-newton bench <name>` subcommand.
_BENCH_MODULES = [
    "classification",
    "ranking",
    "shortest_path",
]
# Modules registering a `keras-newton data <name>` subcommand.
_DATA_MODULES = [
    "warcraft_data",
]
# Modules registering `keras-newton tune <benchmark>` subcommands (KerasTuner searches).
_TUNE_MODULES = [
    "tune",
]
# Modules registering `keras-newton export <kind>` subcommands (TF-Serving SavedModels).
_EXPORT_MODULES = [
    "export",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-newton",
        description="Newton losses for Keras: benchmarks and data tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group, modules, help_text in (
        ("bench", _BENCH_MODULES, "reproduce the paper's benchmarks"),
        ("data", _DATA_MODULES, "generate or convert data sets"),
        ("tune", _TUNE_MODULES, "search hyperparameters with KerasTuner"),
        ("export", _EXPORT_MODULES, "export trained models for TF-Serving"),
    ):
        group_parser = commands.add_parser(group, help=help_text)
        sub = group_parser.add_subparsers(dest="name", required=True)
        for module in modules:
            importlib.import_module(f"keras_newton.app.{module}").register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
