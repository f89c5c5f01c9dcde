"""The layout's import rules, checked on the source with ``ast`` (no module is imported):

* ``preprocess/`` and ``train/`` never import each other; they meet only through the cache
  (``damt.cache``);
* ``damt/`` is the library: it imports neither stage, except its app layer ``damt/app/`` (the
  CLI, the demo, the benchmarks' baseline), which joins them (``damt/cli.py`` and
  ``train/__main__.py`` are entry points into it);
* nothing but the app layer imports ``damt.app`` (the stages sit below it);
* ``damt.model`` and ``damt.tasks`` do not import each other in a cycle (module-level imports,
  at package granularity, so an import sorter can never break the import order).

Every import counts for the stage rules, also one inside a function and an
``importlib.import_module("...")`` with a literal name; the cycle rule looks at what runs at
import time (module and class bodies, not functions, not ``if TYPE_CHECKING:`` blocks).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("damt", "preprocess", "train")
#: entry points that hand over to the app layer although they are not under damt/app/:
#: ``python -m damt.cli`` and ``python -m train`` (both run damt.app.cli.main)
APP_ENTRY_POINTS = {"damt/cli.py", "train/__main__.py"}


def module_of(path: Path, root: Path) -> str:
    """``damt/cache/__init__.py`` -> ``damt.cache``; ``train/loop.py`` -> ``train.loop``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, root: Path, import_time_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``path``. ``from a import b`` yields ``a`` and
    ``a.b`` (b may be a submodule); relative imports are resolved. With ``import_time_only``,
    only the imports that run when the module is imported."""
    module = module_of(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if import_time_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if import_time_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def sources(root: Path = REPO) -> list[Path]:
    return sorted(p for r in ROOTS for p in (root / r).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def boundary_violations(root: Path = REPO) -> list[str]:
    """Every import that breaks the stage rules, as ``file:line imports name (why)``."""
    bad = []
    for path in sources(root):
        rel = path.relative_to(root).as_posix()
        stage = _top(rel.replace("/", "."))
        in_app = rel.startswith("damt/app/") or rel in APP_ENTRY_POINTS
        for line, name in imports(path, root):
            top = _top(name)
            if stage == "preprocess" and top == "train":
                why = "preprocess/ never imports train/ (they meet through damt.cache)"
            elif stage == "train" and top == "preprocess":
                why = "train/ never imports preprocess/ (they meet through damt.cache)"
            elif stage == "damt" and not in_app and top in ("preprocess", "train"):
                why = "the library imports no stage (only damt/app/ joins them)"
            elif not in_app and (name == "damt.app" or name.startswith("damt.app.")):
                why = "only the app layer imports damt.app"
            else:
                continue
            if not bad or not bad[-1].startswith(f"{rel}:{line} "):  # one report per import statement
                bad.append(f"{rel}:{line} imports {name} ({why})")
    return bad


def package_graph(root: Path, prefix: str = "damt") -> dict[str, set[str]]:
    """``damt.<pkg>`` -> the ``damt.<pkg>`` packages its modules import at import time. Importing
    ``damt.model.heads`` runs ``damt/model/__init__.py`` first, so a submodule counts as its package."""
    def pkg(name: str) -> str | None:
        parts = name.split(".")
        return ".".join(parts[:2]) if parts[0] == prefix and len(parts) > 1 else None

    graph: dict[str, set[str]] = {}
    for path in sorted((root / prefix).rglob("*.py")):
        src = pkg(module_of(path, root))
        if src is None:
            continue
        targets = {pkg(name) for _, name in imports(path, root, import_time_only=True)}
        graph.setdefault(src, set()).update(t for t in targets if t and t != src)
    return graph


def reaches(graph: dict[str, set[str]], a: str, b: str) -> bool:
    """True if ``a`` imports ``b``, directly or through other packages."""
    seen, todo = set(), [a]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt == b:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_stages_meet_only_through_the_library():
    assert sources(), "no sources found"
    assert boundary_violations() == []


def test_model_and_tasks_import_no_cycle():
    graph = package_graph(REPO)
    assert not (reaches(graph, "damt.model", "damt.tasks") and reaches(graph, "damt.tasks", "damt.model")), (
        f"damt.model -> {sorted(graph.get('damt.model', ()))}; damt.tasks -> {sorted(graph.get('damt.tasks', ()))}")


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for r in ROOTS:
        (tmp_path / r).mkdir(exist_ok=True)
    return tmp_path


def test_the_checks_catch_what_they_forbid(tmp_path):
    """The checkers themselves: each kind of forbidden import is found, allowed ones are not."""
    root = _tree(tmp_path, {
        "preprocess/a.py": "def f():\n    from train.loop import train\n",
        "train/b.py": "import importlib\nm = importlib.import_module('preprocess.run')\n",
        "damt/x.py": "from preprocess import run\n",
        "damt/app/cli.py": "import preprocess.run\nimport train.loop\n",
        "train/c.py": "from damt.app.baseline import monai_chain\n",
        "train/ok.py": "from damt.cache import Cache\nfrom . import b\n",
        "damt/model/__init__.py": "from damt.model.heads import H\n",
        "damt/model/heads.py": "import torch\n",
        "damt/tasks/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import damt.model\n"
                                  "def build():\n    from damt.model import heads\n",
        "damt/tasks/pretext.py": "from damt.model.heads import H\n",
    })
    bad = boundary_violations(root)
    assert [b.split(" ")[0] for b in bad] == ["damt/x.py:1", "preprocess/a.py:2", "train/b.py:2", "train/c.py:1"]
    graph = package_graph(root)
    assert reaches(graph, "damt.tasks", "damt.model") and not reaches(graph, "damt.model", "damt.tasks")
    (root / "damt/model/heads.py").write_text("from damt.tasks import pretext\n")  # the cycle of issue 14
    graph = package_graph(root)
    assert reaches(graph, "damt.model", "damt.tasks") and reaches(graph, "damt.tasks", "damt.model")
