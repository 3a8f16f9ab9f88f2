"""The keras-newton application: the ``keras-newton`` command and its subcommands.

``keras-newton bench`` (the paper's benchmarks), ``tune`` (KerasTuner searches), ``export``
(TF-Serving) and ``data`` (data sets) live here, one module each, with the command line in
`keras_newton.app.cli` (also ``python -m keras_newton.app``). The application imports the
library (`keras_newton` and its subpackages); nothing in the library imports the
application.
"""
