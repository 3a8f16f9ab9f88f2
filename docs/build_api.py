"""Builds the keras-newton API reference (Markdown) from the docstrings.

    python docs/build_api.py                       # writes build/api/*.md
    python docs/build_api.py --strict              # ... and fails on any problem (CI)
    python docs/build_api.py --out DIR --strict

One page per public module (`MODULES`): every public class (its signature, docstring and
its own documented public methods) and function (signature and docstring), in the order
of the module's ``__all__`` or alphabetically. The public names of a module are its
``__all__``, else the classes and functions of keras_newton that it defines or re-exports
under a name without a leading underscore.

``--strict`` turns these into errors (exit status 1, one line each):

- a module that does not import (``keras_newton.models.hypermodels`` and
  ``keras_newton.datasets.tfds_builders`` are skipped with a note when KerasTuner or
  TensorFlow Datasets is not installed: they are optional extras);
- a public class or function without a docstring;
- a public class without a usage example (an ``Example`` section) in its docstring;
- a public Keras layer, loss or metric class that is not registered as serializable
  (``@keras.saving.register_keras_serializable(package="keras_newton")``), or whose
  constructor takes arguments that the ``get_config`` it inherits from Keras does not save
  (docs/conventions.md, "Serialization": every public class round-trips through ``.keras`` files).

Only the standard library, Keras and keras_newton are used (no documentation tool needed).
"""

import argparse
import importlib
import inspect
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The documented modules, in page order.
MODULES = [
    "keras_newton",
    "keras_newton.curvature",
    "keras_newton.tikhonov",
    "keras_newton.callbacks",
    "keras_newton.layers",
    "keras_newton.losses",
    "keras_newton.metrics",
    "keras_newton.sorting",
    "keras_newton.paths",
    "keras_newton.stochastic",
    "keras_newton.models",
    "keras_newton.models.hypermodels",
    "keras_newton.recipes",
    "keras_newton.datasets",
    "keras_newton.datasets.tfds_builders",
    "keras_newton.serving",
]
#: Modules whose import may fail for lack of an optional extra: module -> (package, extra).
OPTIONAL = {"keras_newton.models.hypermodels": ("keras_tuner", "tune"),
            "keras_newton.datasets.tfds_builders": ("tensorflow_datasets", "tfds")}


def _own(obj, package="keras_newton"):
    return (getattr(obj, "__module__", "") or "").split(".")[0] == package


def public_names(module):
    """The public names of ``module``: ``__all__``, else its keras_newton classes/functions."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return sorted(
        name for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and _own(obj))


def _doc(obj):
    """The object's own docstring (not inherited), cleaned; ``""`` when missing."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else ""


def _signature(name, obj):
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def _is_keras_object(cls):
    import keras

    return issubclass(cls, (keras.layers.Layer, keras.losses.Loss, keras.metrics.Metric))


# Constructor arguments that Keras' own get_config already saves.
_KERAS_SAVED = {"self", "name", "dtype", "trainable", "reduction", "kwargs"}


def _constructor_arguments(cls):
    """The arguments of the keras_newton constructor of ``cls`` that Keras does not save."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            if not _own(klass):
                return []
            params = inspect.signature(vars(klass)["__init__"]).parameters
            return [p for p in params if p not in _KERAS_SAVED]
    return []


def check_class(qualname, cls):
    """The strict-mode problems of public class ``cls`` (a list of messages)."""
    import keras

    problems = []
    doc = _doc(cls)
    if not doc:
        problems.append(f"{qualname}: public class without a docstring")
    elif "Example" not in doc:
        problems.append(f"{qualname}: the docstring has no usage example ('Example:' "
                        "section)")
    if _is_keras_object(cls) and not inspect.isabstract(cls):
        registered = keras.saving.get_registered_name(cls)
        if not registered.startswith("keras_newton>"):
            problems.append(f"{qualname}: Keras object not registered with "
                            "@keras.saving.register_keras_serializable(package="
                            "'keras_newton')")
        owners = [k for k in cls.__mro__ if "get_config" in vars(k)]
        extra = _constructor_arguments(cls)
        if owners and not _own(owners[0]) and extra:
            problems.append(f"{qualname}: takes {', '.join(extra)} but inherits get_config "
                            f"from Keras ({owners[0].__module__}.{owners[0].__name__}), "
                            "which does not save them")
    return problems


def _methods(cls):
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            target = member.fget if isinstance(member, property) else member
            doc = _doc(target)
            if doc:
                yield name, member, doc


def render_module(modname, module):
    """``(markdown, problems)`` of one module page."""
    lines = [f"# `{modname}`", ""]
    doc = _doc(module)
    if doc:
        lines += [doc, ""]
    problems = []
    constants = []
    for name in public_names(module):
        if not hasattr(module, name):
            problems.append(f"{modname}.{name}: listed in __all__ but not defined")
            continue
        obj = getattr(module, name)
        qualname = f"{modname}.{name}"
        if inspect.ismodule(obj):
            continue
        if inspect.isclass(obj):
            problems += check_class(qualname, obj)
            lines += [f"## class `{name}`", "", "```python", _signature(name, obj), "```",
                      ""]
            if _own(obj) and obj.__module__ != modname:
                lines += [f"Defined in `{obj.__module__}`.", ""]
            lines += [_doc(obj) or "*(no docstring)*", ""]
            for mname, member, mdoc in _methods(obj):
                if isinstance(member, property):
                    lines += [f"### property `{name}.{mname}`", "", mdoc, ""]
                else:
                    lines += [f"### `{name}.{_signature(mname, member)}`", "", mdoc, ""]
        elif callable(obj):
            fdoc = _doc(obj)
            if not fdoc:
                problems.append(f"{qualname}: public function without a docstring")
            lines += [f"## `{_signature(name, obj)}`", ""]
            if _own(obj) and obj.__module__ != modname:
                lines += [f"Defined in `{obj.__module__}`.", ""]
            lines += [fdoc or "*(no docstring)*", ""]
        else:
            text = repr(obj)
            constants.append(f"- `{name}` = `{text if len(text) < 200 else text[:197] + '...'}`")
    if constants:
        lines += ["## Constants", ""] + constants + [""]
    return "\n".join(lines), problems


def build(out, modules=None, stream=sys.stdout):
    """Writes one Markdown page per module and ``index.md`` into ``out``.

    Args:
        out: output folder (created if needed).
        modules: module names to document; default `MODULES`.
        stream: where notes go.

    Returns:
        ``(pages, problems)``: the written paths and the strict-mode problems found.
    """
    modules = MODULES if modules is None else modules
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    os.makedirs(out, exist_ok=True)
    pages, problems, index = [], [], ["# keras-newton API reference", ""]
    for modname in modules:
        try:
            module = importlib.import_module(modname)
        except ImportError as error:
            optional = OPTIONAL.get(modname)
            if optional and error.name in (optional[0], modname):
                print(f"note: {modname} skipped ({optional[0]} is not installed; extra "
                      f"[{optional[1]}])", file=stream)
                continue
            problems.append(f"{modname}: does not import ({error})")
            continue
        text, found = render_module(modname, module)
        problems += found
        path = os.path.join(out, f"{modname}.md")
        with open(path, "w") as f:
            f.write(text)
        pages.append(path)
        summary = (_doc(module).splitlines() or [""])[0]
        index.append(f"- [`{modname}`]({modname}.md): {summary}")
    index_path = os.path.join(out, "index.md")
    with open(index_path, "w") as f:
        f.write("\n".join(index) + "\n")
    pages.insert(0, index_path)
    return pages, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "build", "api"),
                        help="output folder (default build/api)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 on missing docstrings, examples or "
                             "serialization")
    args = parser.parse_args(argv)
    pages, problems = build(args.out)
    print(f"wrote {len(pages)} pages to {args.out}")
    for problem in problems:
        print(("error: " if args.strict else "warning: ") + problem)
    if problems and args.strict:
        print(f"{len(problems)} problem(s): the API reference is not complete.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
