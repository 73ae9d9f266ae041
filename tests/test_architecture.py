"""Dependencies run one way: core ← annotation ← training ← labor_ledger (← frontend, config).

A lower app never imports a higher one, not even inside a function: it announces what
happened through its hooks (annotation/hooks.py, training/hooks.py) and the higher app
connects to them in AppConfig.ready(). Checked on the source with `ast`, so an import hidden
in a function body counts as much as one at the top.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "annotation", "training", "labor_ledger", "frontend"]


def imported_apps(source: str) -> set[str]:
    """The top-level packages a module imports, wherever the import statement sits."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def upward_imports(root: Path) -> list[str]:
    """Every import of a higher layer by a lower one under `root`, as 'file: app imports app'."""
    problems = []
    for rank, app in enumerate(LAYERS):
        higher = set(LAYERS[rank + 1 :])
        for path in sorted((root / app).rglob("*.py")):
            for target in sorted(imported_apps(path.read_text(encoding="utf-8")) & higher):
                problems.append(f"{path.relative_to(root)}: {app} imports {target}")
    return problems


def test_no_app_imports_an_app_above_it():
    assert upward_imports(ROOT) == []


def test_the_check_finds_an_upward_import_even_inside_a_function(tmp_path):
    for app in LAYERS:
        (tmp_path / app).mkdir()
    (tmp_path / "training" / "ok.py").write_text("from annotation.models import Example\nimport core.errors\n")
    (tmp_path / "annotation" / "services.py").write_text(
        "def submit():\n    from labor_ledger import services\n    services.attempt_closed(None)\n"
    )
    (tmp_path / "core" / "roles.py").write_text("import training.models\n")
    assert upward_imports(tmp_path) == [
        "core/roles.py: core imports training",
        "annotation/services.py: annotation imports labor_ledger",
    ]


def test_no_test_imports_from_a_conftest():
    """Shared test helpers live in tests/support; a conftest only declares fixtures (importing
    one from a test module runs it twice and hides where a helper comes from)."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "conftest":
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
