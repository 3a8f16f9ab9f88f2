"""The ``keras-newton`` command.

    keras-newton bench classification [options]   # paper Table 4 (MNIST)
    keras-newton bench ranking [options]          # paper Table 1 (four-digit MNIST)
    keras-newton bench shortest-path [options]    # paper Tables 2-3 (Warcraft)
    keras-newton data warcraft --out DIR          # procedural Warcraft look-alike
    keras-newton tune ranking [options]           # KerasTuner search (also shortest-path,
                                                  #   classification)
    keras-newton export ranker --model M.keras --out DIR/NAME/VERSION  # TF-Serving

Each command lives in its own module of this package, which exposes
``register(subparsers)`` adding its parser with ``set_defaults(func=run)`` (and optionally
``check=``, a check of its arguments without Keras, see `parse_args`), and is listed
in `_BENCH_MODULES`, `_DATA_MODULES`, `_TUNE_MODULES` or `_EXPORT_MODULES`
below.

Errors: a user error of any command (a bad option, a missing file, an unusable ``--out``)
is one line on stderr, ``keras-newton: error: ...``, with exit status 2 (commands raise
`keras_newton.app.common.UsageError`; argparse's own errors are turned into it). Any other
exception is a bug and shows its traceback. Ctrl-C exits with status 130.
"""

import argparse
import importlib
import sys

from keras_newton.app.common import EXIT_INTERRUPTED
from keras_newton.app.common import UsageError

PROG = "keras-newton"

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


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors raise `UsageError` (one line, naming
    the subcommand) instead of printing the usage and exiting."""

    def error(self, message):
        where = self.prog[len(PROG):].strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser():
    parser = ArgumentParser(
        prog=PROG,
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


def parse_args(argv):
    """``argv`` parsed, then checked by the command's ``check(args)`` if it set one
    (``set_defaults(check=...)``): checks of the arguments that need neither Keras nor any
    side effect (a file that must exist, a folder that must not), so that their errors come
    as fast as argparse's. Raises `UsageError`."""
    args = build_parser().parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        check(args)
    return args


def main(argv=None):
    """Runs the command of ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        args.argv = argv
        return args.func(args) or 0
    except UsageError as e:
        message = " ".join(str(e).split())
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
