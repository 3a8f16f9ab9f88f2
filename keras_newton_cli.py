"""The ``keras-newton`` console command: answers ``--help`` and usage errors without Keras.

``import keras_newton`` imports the whole library, hence Keras and TensorFlow (seconds).
The command line itself (`keras_newton.app.cli`: argparse, the options of every command)
needs neither, so this entry point first parses ``argv`` with the application's modules
loaded under a bare ``keras_newton`` package object (its ``__init__`` not run): ``--help``
and usage errors are answered there (argparse's, and the checks a command makes without
Keras, `keras_newton.app.cli.parse_args`). For a command that runs, those modules are dropped
and the command runs through the real package, `keras_newton.app.cli.main`.
"""

import importlib
import importlib.util
import sys
import types


def _drop_package():
    for name in [m for m in sys.modules if m == "keras_newton" or
                 m.startswith("keras_newton.")]:
        del sys.modules[name]


def _light_parse(argv):
    """``None`` to run the command; else the exit status of ``--help`` or a usage error."""
    spec = importlib.util.find_spec("keras_newton")
    package = types.ModuleType("keras_newton")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["keras_newton"] = package
    try:
        cli = importlib.import_module("keras_newton.app.cli")
        try:
            cli.parse_args(argv)
        except cli.UsageError as e:
            print(f"{cli.PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        except SystemExit as e:  # --help, --version
            return e.code if isinstance(e.code, int) else 0
        return None
    finally:
        _drop_package()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "keras_newton" not in sys.modules:
        status = _light_parse(argv)
        if status is not None:
            return status
    from keras_newton.app.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
