"""The one-way dependency rule between genrec's layers, checked on the source with ``ast`` (nothing is imported).

The installed ``genrec`` namespace is built from four folders (pyproject.toml, ``package-dir``)::

    tokenizer/ -> genrec.tokenizer    bottom layer: needs nothing else from genrec
    genrec/    -> genrec (core)       data, models, decoding, training, pipeline; may use genrec.tokenizer
    eval/      -> genrec.eval         metrics and evaluation loops; may use core and tokenizer
    recipes/   -> genrec.recipes      the training / evaluation scripts; may use everything, but not each other

Rules (each a test below):

(a) a module under ``tokenizer/`` imports nothing from ``genrec`` but ``genrec.tokenizer.*`` (relative imports
    inside the tokenizer package are fine; ``from genrec import __version__`` is not: it runs genrec/__init__.py);
(b) a module under ``genrec/`` (core) imports neither ``genrec.eval`` nor ``genrec.recipes``, except the
    modules in :data:`TOP_LAYER`: the command-line dispatcher ``genrec/cli.py`` is its own top layer above the
    recipes (``genrec train ...`` runs them);
(c) a recipe imports no other recipe (``genrec.recipes.x``, ``from genrec.recipes import x``, ``from recipes
    import x``, ``from . import x`` or a bare ``import train_genrec`` as when run from the recipes folder);
    what two recipes share belongs in the library;
(d) ``eval/`` imports no recipe.

Every import counts: module level or inside a function, ``import x`` and ``from x import y`` (``from genrec
import eval`` imports ``genrec.eval``), relative forms resolved against the file's package, and
``importlib.import_module("...")`` / ``__import__("...")`` calls with a literal name. A violation reads
``file:line: the import statement``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Source folder -> the package it is installed as (pyproject.toml [tool.setuptools] package-dir).
PACKAGES = {"tokenizer": "genrec.tokenizer", "genrec": "genrec", "eval": "genrec.eval", "recipes": "genrec.recipes"}

# Modules of genrec/ (paths relative to the repository root) that sit above every other layer and so may
# import genrec.eval and genrec.recipes. Edit here, with a reason, to declare another one.
TOP_LAYER = {"genrec/cli.py"}  # the `genrec` command line dispatches to the recipes


@dataclass(frozen=True)
class Import:
    file: str  # relative to the root, e.g. "tokenizer/artifact.py"
    line: int
    target: str  # the absolute dotted name imported, e.g. "genrec.eval.evaluate.left_align"
    statement: str  # as written in the source

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.statement}"


def recipe_names(root: Path) -> set[str]:
    """The recipe modules: the ``.py`` files directly in ``recipes/`` (not ``__init__``)."""
    return {p.stem for p in (root / "recipes").glob("*.py") if p.stem != "__init__"}


def _module_package(root: Path, path: Path) -> str:
    """The package a source file's relative imports resolve against (``tokenizer/regularizers/x.py`` ->
    ``genrec.tokenizer.regularizers``; an ``__init__.py`` is its own package)."""
    rel = path.relative_to(root)
    return ".".join([PACKAGES[rel.parts[0]], *rel.parts[1:-1]])


def _normalise(target: str, recipes: set[str]) -> str:
    """The installed name of an import written against the source tree: ``recipes.x`` and a bare recipe
    name (``import train_genrec``, as when a script runs from recipes/) are ``genrec.recipes.x``."""
    head = target.split(".")[0]
    if head == "recipes" or head in recipes:
        return "genrec.recipes" + target[len("recipes"):] if head == "recipes" else "genrec.recipes." + target
    return target


def imports_in(root: Path, path: Path, recipes: set[str] | None = None) -> list[Import]:
    """Every import in one source file (the whole tree: module level, functions, classes, ``if`` blocks)."""
    recipes = recipe_names(root) if recipes is None else recipes
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    rel = path.relative_to(root).as_posix()
    package = _module_package(root, path)
    lines = source.splitlines()
    found = []

    def written(node: ast.stmt | ast.expr) -> str:  # the statement as in the source, on one line
        text = lines[node.lineno - 1 : node.end_lineno]
        text[-1] = text[-1][: node.end_col_offset]
        text[0] = text[0][node.col_offset :]
        return " ".join(part.strip() for part in text)

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            statement = written(node)
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, _normalise(alias.name, recipes), statement) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..base import y
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = _normalise(node.module or "", recipes)
            for alias in node.names:
                target = module if alias.name == "*" else f"{module}.{alias.name}"
                found.append(Import(rel, node.lineno, target, statement))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("import_module", "__import__"):
                target = node.args[0].value
                if target.startswith("."):  # importlib.import_module(".x", package=...): resolve against this file
                    level = len(target) - len(target.lstrip("."))
                    base = package.split(".")
                    base = base[: len(base) - (level - 1)] if level > 1 else base
                    target = ".".join(base + ([target.lstrip(".")] if target.lstrip(".") else []))
                found.append(Import(rel, node.lineno, _normalise(target, recipes), statement))
    return found


def _files(root: Path, folder: str) -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _under(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def tokenizer_violations(root: Path = ROOT) -> list[Import]:
    """(a) tokenizer/ imports from genrec only genrec.tokenizer.*."""
    return [imp for path in _files(root, "tokenizer") for imp in imports_in(root, path)
            if _under(imp.target, "genrec") and not _under(imp.target, "genrec.tokenizer")]


def core_violations(root: Path = ROOT, top_layer: set[str] = TOP_LAYER) -> list[Import]:
    """(b) genrec/ (but the TOP_LAYER modules) imports neither genrec.eval nor genrec.recipes."""
    return [imp for path in _files(root, "genrec") if path.relative_to(root).as_posix() not in top_layer
            for imp in imports_in(root, path) if _under(imp.target, "genrec.eval") or _under(imp.target, "genrec.recipes")]


def recipe_violations(root: Path = ROOT) -> list[Import]:
    """(c) no recipe imports another recipe."""
    recipes = recipe_names(root)
    found = []
    for path in _files(root, "recipes"):
        for imp in imports_in(root, path, recipes):
            parts = imp.target.split(".")
            if _under(imp.target, "genrec.recipes") and len(parts) > 2 and parts[2] in recipes and parts[2] != path.stem:
                found.append(imp)
    return found


def eval_violations(root: Path = ROOT) -> list[Import]:
    """(d) eval/ imports no recipe."""
    return [imp for path in _files(root, "eval") for imp in imports_in(root, path) if _under(imp.target, "genrec.recipes")]


def _report(violations: list[Import]) -> str:
    """One line per import statement (``from x import a, b`` is one line, though it imports two names)."""
    return "\n".join(dict.fromkeys(str(v) for v in violations))


# ---- the rules on this tree


def test_tokenizer_imports_only_the_tokenizer_package():
    violations = tokenizer_violations()
    assert not violations, "tokenizer/ may import from genrec only genrec.tokenizer.*:\n" + _report(violations)


def test_core_imports_neither_eval_nor_recipes():
    violations = core_violations()
    assert not violations, (f"genrec/ (but {sorted(TOP_LAYER)}) may import neither genrec.eval nor genrec.recipes:\n"
                            + _report(violations))


def test_recipes_import_no_other_recipe():
    violations = recipe_violations()
    assert not violations, "a recipe may not import another recipe:\n" + _report(violations)


def test_eval_imports_no_recipe():
    violations = eval_violations()
    assert not violations, "eval/ may not import a recipe:\n" + _report(violations)


def test_top_layer_names_existing_core_modules():
    """A renamed or deleted top-layer module must not leave a stale exemption behind."""
    assert all((ROOT / path).is_file() and path.startswith("genrec/") for path in TOP_LAYER), TOP_LAYER


# ---- the checker itself, on a synthetic tree: it must see every form of import


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_tree(tmp_path):
    """A tree with the four folders, the allowed imports of each layer and one of each forbidden form."""
    for folder in PACKAGES:
        _write(tmp_path, f"{folder}/__init__.py", "")
    _write(tmp_path, "tokenizer/regularizers/__init__.py", "")
    # allowed
    _write(tmp_path, "tokenizer/ok.py", "import torch\nfrom genrec.tokenizer.base import X\nfrom . import base\n"
                                        "from .base import Y\nimport genrec.tokenizer.io\n")
    _write(tmp_path, "tokenizer/regularizers/ok.py", "from ..base import X\nfrom .. import pairs\n")
    _write(tmp_path, "genrec/ok.py", "from genrec.tokenizer import SIDTable\nfrom .data import load_dataset\n")
    _write(tmp_path, "genrec/cli.py", "from genrec.recipes import train_genrec\nimport genrec.eval.report\n")
    _write(tmp_path, "eval/ok.py", "from genrec.data import load_dataset\nfrom genrec.tokenizer import SIDTable\n")
    _write(tmp_path, "recipes/train_genrec.py", "from genrec.eval.evaluate import evaluate_generative\n"
                                                "from genrec.recipes import configs_helper_that_is_not_a_recipe\n")
    # forbidden
    _write(tmp_path, "tokenizer/bad.py", "def version():\n    from genrec import __version__\n    return __version__\n"
                                         "import genrec.data\n")
    _write(tmp_path, "tokenizer/regularizers/bad.py", "from ... import pipeline\n")  # genrec.pipeline
    _write(tmp_path, "genrec/bad.py", "from genrec.eval.evaluate import left_align\nfrom genrec import eval\n"
                                      "def f():\n    import importlib\n    return importlib.import_module('genrec.recipes.train_genrec')\n")
    _write(tmp_path, "genrec/data/bad.py", "from ..eval import metrics\n")  # genrec.eval (relative, from a subpackage)
    _write(tmp_path, "recipes/evaluate_genrec.py", "from genrec.recipes.train_genrec import GenRecConfig\n"
                                                   "def f():\n    import train_genrec\n    from recipes import train_tokenizer\n"
                                                   "    from . import compare_tokenizers\n    return __import__('train_sasrec')\n")
    _write(tmp_path, "recipes/train_tokenizer.py", "from genrec.recipes import train_genrec as tg\n")
    _write(tmp_path, "recipes/compare_tokenizers.py", "")
    _write(tmp_path, "recipes/train_sasrec.py", "")
    _write(tmp_path, "eval/bad.py", "def f():\n    from genrec.recipes.train_genrec import build_inputs\n")
    return tmp_path


def _lines(violations: list[Import]) -> list[str]:
    return sorted(f"{v.file}:{v.line}:{v.target}" for v in violations)


def test_checker_catches_tokenizer_violations(fake_tree):
    assert _lines(tokenizer_violations(fake_tree)) == [
        "tokenizer/bad.py:2:genrec.__version__", "tokenizer/bad.py:4:genrec.data",
        "tokenizer/regularizers/bad.py:1:genrec.pipeline"]


def test_checker_catches_core_violations_but_spares_the_top_layer(fake_tree):
    assert _lines(core_violations(fake_tree)) == [
        "genrec/bad.py:1:genrec.eval.evaluate.left_align", "genrec/bad.py:2:genrec.eval",
        "genrec/bad.py:5:genrec.recipes.train_genrec", "genrec/data/bad.py:1:genrec.eval.metrics"]
    assert {v.file for v in core_violations(fake_tree, top_layer=set())} >= {"genrec/cli.py"}


def test_checker_catches_recipe_violations(fake_tree):
    assert _lines(recipe_violations(fake_tree)) == [
        "recipes/evaluate_genrec.py:1:genrec.recipes.train_genrec.GenRecConfig",
        "recipes/evaluate_genrec.py:3:genrec.recipes.train_genrec",
        "recipes/evaluate_genrec.py:4:genrec.recipes.train_tokenizer",
        "recipes/evaluate_genrec.py:5:genrec.recipes.compare_tokenizers",
        "recipes/evaluate_genrec.py:6:genrec.recipes.train_sasrec",
        "recipes/train_tokenizer.py:1:genrec.recipes.train_genrec"]


def test_checker_catches_eval_violations(fake_tree):
    assert _lines(eval_violations(fake_tree)) == ["eval/bad.py:2:genrec.recipes.train_genrec.build_inputs"]


def test_violation_messages_name_file_line_and_import(fake_tree):
    assert str(eval_violations(fake_tree)[0]) == "eval/bad.py:2: from genrec.recipes.train_genrec import build_inputs"
