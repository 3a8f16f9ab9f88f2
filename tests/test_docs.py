"""The API reference builder, docs/build_api.py.

Specification: every public name of a documented module gets a section with its
signature and its own docstring; ``--strict`` reports exactly the listed problems (missing
docstrings, missing examples, unregistered Keras objects, constructor arguments that an
inherited ``get_config`` drops) and exits with status 1, and with none of them exits 0.
"""

import importlib.util
import inspect
import os
import sys
import textwrap
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def build_api():
    spec = importlib.util.spec_from_file_location(
        "build_api", os.path.join(REPO, "docs", "build_api.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_module(name, source):
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(textwrap.dedent(source), module.__dict__)
    return module


GOOD = '''
    """A fake documented module."""
    import keras

    __all__ = ["DocsTestScaled", "double", "LIMIT"]
    LIMIT = 3

    def double(x):
        """Twice ``x``."""
        return 2 * x

    @keras.saving.register_keras_serializable(package="keras_newton")
    class DocsTestScaled(keras.losses.Loss):
        """A scaled MSE: ``l = scale * (y - t)^2``.

        Example:

        ```python
        model.compile("sgd", loss=DocsTestScaled(2.0))
        ```
        """

        def __init__(self, scale=1.0, name="scaled"):
            super().__init__(name=name)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * (y_pred - y_true) ** 2

        def get_config(self):
            """The constructor arguments."""
            return {"scale": self.scale, "name": self.name}
'''

BAD = '''
    import keras

    __all__ = ["undocumented", "NoExample", "Unregistered", "DocsTestDropped", "missing"]

    def undocumented(x):
        return x

    class NoExample:
        """Documented, but shows no use."""

    class Unregistered(keras.layers.Layer):
        """A layer.

        Example:

        ```python
        Unregistered()(x)
        ```
        """

    @keras.saving.register_keras_serializable(package="keras_newton")
    class DocsTestDropped(keras.layers.Layer):
        """A layer whose ``width`` Keras' get_config does not save.

        Example:

        ```python
        DocsTestDropped(3)(x)
        ```
        """

        def __init__(self, width, **kwargs):
            super().__init__(**kwargs)
            self.width = width
'''


def test_pages_document_every_public_name(build_api, tmp_path):
    modules = ["keras_newton", "keras_newton.losses", "keras_newton.metrics",
               "keras_newton.serving"]
    pages, _ = build_api.build(str(tmp_path), modules=modules)
    assert sorted(os.path.basename(p) for p in pages) == sorted(
        ["index.md"] + [f"{m}.md" for m in modules])
    for modname in modules:
        module = importlib.import_module(modname)
        with open(tmp_path / f"{modname}.md") as f:
            page = f.read()
        for name in build_api.public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            assert f"`{name}" in page, (modname, name)
            doc = obj.__doc__ if inspect.isclass(obj) or callable(obj) else None
            if doc and (inspect.isclass(obj) or inspect.isfunction(obj)):
                assert inspect.cleandoc(doc).splitlines()[0] in page, (modname, name)
    with open(tmp_path / "keras_newton.md") as f:
        page = f.read()
    assert str(inspect.signature(importlib.import_module("keras_newton").NewtonLoss)) in page
    with open(tmp_path / "index.md") as f:
        assert "(keras_newton.losses.md)" in f.read()


def test_strict_problems(build_api, tmp_path):
    _fake_module("keras_newton._docs_test_good", GOOD)
    _fake_module("keras_newton._docs_test_bad", BAD)
    _, problems = build_api.build(str(tmp_path), modules=["keras_newton._docs_test_good"])
    assert problems == []
    _, problems = build_api.build(str(tmp_path), modules=[
        "keras_newton._docs_test_good", "keras_newton._docs_test_bad",
        "keras_newton._docs_test_missing"])
    prefix = "keras_newton._docs_test_bad."
    expected = {
        prefix + "undocumented: public function without a docstring",
        prefix + "NoExample: the docstring has no usage example",
        prefix + "Unregistered: Keras object not registered",
        prefix + "DocsTestDropped: takes width but inherits get_config",
        prefix + "missing: listed in __all__ but not defined",
        "keras_newton._docs_test_missing: does not import",
    }
    assert len(problems) == len(expected)
    for start in expected:
        assert sum(p.startswith(start) for p in problems) == 1, (start, problems)


def test_strict_exit_status(build_api, tmp_path, monkeypatch, capsys):
    _fake_module("keras_newton._docs_test_good", GOOD)
    _fake_module("keras_newton._docs_test_bad", BAD)
    monkeypatch.setattr(build_api, "MODULES", ["keras_newton._docs_test_good"])
    assert build_api.main(["--strict", "--out", str(tmp_path)]) == 0
    monkeypatch.setattr(build_api, "MODULES", ["keras_newton._docs_test_bad"])
    assert build_api.main(["--strict", "--out", str(tmp_path)]) == 1
    assert build_api.main(["--out", str(tmp_path)]) == 0  # problems are warnings only
    out = capsys.readouterr().out
    assert "error: keras_newton._docs_test_bad.undocumented" in out
    assert "warning: keras_newton._docs_test_bad.undocumented" in out


# -- references between the files of the repository ---------------------------------------

SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "results", "__pycache__",
             ".pytest_cache"}


def _repo_files(suffixes):
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for file in files:
            if file.endswith(suffixes):
                yield os.path.join(folder, file)


def _slug(heading):
    """GitHub's anchor of a Markdown heading."""
    import re

    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _headings(path):
    with open(path, encoding="utf-8") as f:
        return [line.lstrip("#").strip() for line in f if line.startswith("#")]


def test_markdown_links_resolve():
    """Every relative link of README.md and docs/*.md names an existing file, and every
    ``#anchor`` a heading of its target (GitHub's slugs)."""
    import re

    pages = [os.path.join(REPO, "README.md")] + sorted(
        p for p in _repo_files((".md",)) if os.path.dirname(p) == os.path.join(REPO, "docs"))
    checked = 0
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
            assert os.path.exists(path), (page, target)
            assert os.path.commonpath([REPO, path]) == REPO, (page, target)
            if anchor:
                assert anchor in [_slug(h) for h in _headings(path)], (page, target)
            checked += 1
    assert checked > 20


def test_docstrings_cite_existing_conventions():
    """Every mention of docs/conventions.md in the code names an existing section when it
    quotes one (``docs/conventions.md, "Section"``), and nothing cites the design notes
    that are not part of the repository."""
    import re

    sections = set(_headings(os.path.join(REPO, "docs", "conventions.md")))
    gone = ("DESIGN" + ".md", "REFERENCES" + ".md")
    cited = 0
    for path in _repo_files((".py", ".md", ".toml")):
        if os.path.abspath(path) == os.path.abspath(__file__):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for name in gone:
            assert name not in text, (path, name)
        for match in re.finditer(r'docs/conventions\.md,?\s+\(?"([^"]+)"', text):
            assert match.group(1) in sections, (path, match.group(1))
        cited += text.count("docs/conventions.md")
    assert cited > 15


def test_no_paths_outside_the_repository():
    """No source refers to a machine's folders or to data next to the clone: data comes
    from arguments and environment variables (e.g. $KERAS_NEWTON_MNIST)."""
    import re

    pattern = re.compile(r"""["']/work/|"\.\.",\s*"shared"|dirname\(REPO\)""")
    for path in _repo_files((".py", ".md", ".toml", ".cfg", ".sh")):
        if os.path.abspath(path) == os.path.abspath(__file__):
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                assert not pattern.search(line), f"{path}:{number}: {line.strip()}"
