"""One-way layering: the library never imports the application, and has no import cycle.

The package is read as source (every module's AST, so imports inside functions count as
much as those at the top), each import resolved to the keras_newton module it names, and
modules grouped into components: the first name under ``keras_newton`` (a subpackage such
as ``losses``, or a top-level module such as ``newton``), and the root package
``keras_newton`` itself (its ``__init__``, which imports the whole library).

Specification:
(a) no module outside ``keras_newton/app`` imports ``keras_newton.app``;
(b) the graph of imports between the library's components (``app`` excluded) is acyclic;
and, at run time, ``import keras_newton`` loads no module of ``keras_newton.app``.
The checker itself is checked on made-up sources: it must see an import inside a function
and resolve relative imports, and the cycle finder must find a planted cycle.
"""

import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "keras_newton")
ROOT = "keras_newton"
APP = "keras_newton.app"


def package_modules(package_dir=PACKAGE, root=ROOT):
    """``{module name: path}`` of every ``.py`` file under ``package_dir``."""
    modules = {}
    base = os.path.dirname(package_dir)
    for folder, _, files in os.walk(package_dir):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
                modules[name] = path
    return modules


def imported_modules(source, module, is_package, known):
    """The keras_newton modules that ``source`` (of ``module``) imports, anywhere in it.

    ``from X import name`` counts as importing ``X.name`` when that is a module of
    ``known``, else ``X`` (the name comes from X's ``__init__``).
    """
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m == ROOT or m.startswith(ROOT + ".")}


def component(module):
    """``keras_newton`` for the root package, else the first name below it."""
    parts = module.split(".")
    return ROOT if len(parts) == 1 else f"{ROOT}.{parts[1]}"


def import_graph(package_dir=PACKAGE):
    """``(module edges, component edges)``: ``{importer: {imported}}`` for both levels."""
    modules = package_modules(package_dir)
    edges, components = {}, {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        is_package = os.path.basename(path) == "__init__.py"
        edges[name] = imported_modules(source, name, is_package, modules)
        for target in edges[name]:
            a, b = component(name), component(target)
            if a != b:
                components.setdefault(a, set()).add(b)
    return edges, components


def find_cycle(graph):
    """A cycle ``[n0, n1, ..., n0]`` of ``{node: {successors}}``, or ``None``."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_checker_sees_imports_inside_functions_and_relative_ones():
    known = {"keras_newton", "keras_newton.app", "keras_newton.app.tune", "keras_newton.paths",
             "keras_newton.paths.exact", "keras_newton.models", "keras_newton.models.paths"}
    source = (
        "import numpy\n"
        "def f():\n"
        "    from keras_newton.app import tune\n"
        "    import keras_newton.paths.exact\n"
        "class C:\n"
        "    def g(self):\n"
        "        from ..paths import shortest_path\n"
        "        from . import paths\n"
        "        from keras_newton import NewtonLoss\n"
    )
    found = imported_modules(source, "keras_newton.models.hypermodels", False, known)
    assert found == {"keras_newton.app.tune", "keras_newton.paths.exact",
                     "keras_newton.paths", "keras_newton.models.paths", "keras_newton"}


def test_cycle_finder():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_the_library_never_imports_the_application():
    edges, _ = import_graph()
    offenders = sorted(
        f"{importer} -> {target}" for importer, targets in edges.items()
        if not (importer == APP or importer.startswith(APP + "."))
        for target in targets if target == APP or target.startswith(APP + "."))
    assert offenders == []
    assert APP in edges  # the application is there, and was read


def test_the_library_components_import_one_another_without_a_cycle():
    _, components = import_graph()
    library = {a: {b for b in targets if b != APP} for a, targets in components.items()
               if a != APP}
    # The graph is the real one: the hypermodels use the recipes, which use the losses.
    assert "keras_newton.recipes" in library["keras_newton.models"]
    assert "keras_newton.losses" in library["keras_newton.recipes"]
    assert find_cycle(library) is None, find_cycle(library)
    # The application uses the library (one way).
    assert "keras_newton.recipes" in components[APP]


def test_importing_the_library_loads_no_application_module():
    code = ("import sys, keras_newton; "
            "print(sorted(m for m in sys.modules if m.startswith('keras_newton.app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.stdout.strip().splitlines()[-1] == "[]"
