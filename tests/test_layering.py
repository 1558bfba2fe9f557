"""The package's dependency rule, checked on the source: ``genrec.tokenizer`` (tokenizer/) imports nothing
from the rest of genrec, so it can be used (and shipped) on its own."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _genrec_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return [name for name in found if name == "genrec" or name.startswith("genrec.")]


def test_tokenizer_imports_only_itself():
    offenders = {str(path.relative_to(ROOT)): bad for path in sorted((ROOT / "tokenizer").rglob("*.py"))
                 if (bad := [m for m in _genrec_imports(path) if not (m == "genrec.tokenizer" or m.startswith("genrec.tokenizer."))])}
    assert offenders == {}
