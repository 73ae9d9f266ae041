"""Imports inside the training app run one way, and no import hides inside a function to
break a cycle. From the top (the web's entry points) down:

    urls, page_urls -> apis, views, admin -> charts -> services, routing -> tasks -> pipeline, coldstart
        -> featurizers -> worker_cache -> runs -> selectors, memory, debounce -> models, hooks, apps -> ml

A module may import only modules below it (ml's modules import each other, never the app's).
`AppConfig.ready()` is exempt: Django's place to connect hooks once the apps are loaded.
torch and the other heavy libraries are imported inside functions (test_no_torch_in_web.py);
that is the only kind of local import allowed, so this test looks at the app's own modules.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "training"
LAYERS = [
    {"urls", "page_urls"},
    {"apis", "views", "admin"},
    {"charts"},
    {"services", "routing"},
    {"tasks"},
    {"pipeline", "coldstart"},
    {"featurizers"},
    {"worker_cache"},
    {"runs"},
    {"selectors", "memory", "debounce"},
    {"models", "hooks", "apps"},
    {"ml"},  # the torch code: no Django, no app module
]
RANK = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def app_imports(source: str, unit: str, in_ml: bool) -> list[tuple[str, bool, int]]:
    """(imported unit of the app, inside a function?, line) for each import of the app's own
    modules in `source`; `unit` is the importing module's unit ("ml" for training/ml/*)."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if unit == "apps" and isinstance(child, ast.FunctionDef) and child.name == "ready":
                continue  # AppConfig.ready() connects hooks to services: Django's place for it
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.ImportFrom):
                for target in _targets(child, in_ml):
                    found.append((target, in_function, child.lineno))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "training" and "." in alias.name:
                        found.append((alias.name.split(".")[1], in_function, child.lineno))
            visit(child, nested)

    visit(ast.parse(source), False)
    return found


def _targets(node: ast.ImportFrom, in_ml: bool) -> list[str]:
    module = node.module or ""
    if node.level == 0:
        parts = module.split(".")
        if parts[0] != "training":
            return []
        return [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
    if in_ml and node.level == 1:
        return ["ml"]  # within training/ml
    if node.level == (2 if in_ml else 1):
        return [module.split(".")[0]] if module else [a.name for a in node.names]
    return []


def violations(source: str, unit: str, in_ml: bool = False) -> list[str]:
    out = []
    for target, in_function, line in app_imports(source, unit, in_ml):
        if in_function:
            out.append(f"{unit}:{line} imports training.{target} inside a function")
        elif target == unit == "ml":
            continue
        elif target not in RANK or RANK[target] <= RANK[unit]:
            out.append(f"{unit}:{line} imports training.{target}, which is not below it")
    return out


def app_modules():
    for path in sorted(APP.glob("*.py")):
        if path.name != "__init__.py":
            yield path, path.stem, False
    for path in sorted((APP / "ml").glob("*.py")):
        yield path, "ml", True


def test_every_module_of_the_app_has_a_layer():
    assert {unit for _, unit, _ in app_modules()} <= set(RANK)


def test_imports_run_one_way_and_none_is_local():
    found = []
    for path, unit, in_ml in app_modules():
        found += [f"{path.relative_to(ROOT)}: {v}" for v in violations(path.read_text(), unit, in_ml)]
    assert not found, "\n".join(found)


def test_the_check_would_notice_an_upward_or_local_import():
    upward = "from . import runs\nfrom .services import config_get\n"
    local = "from . import runs\n\ndef f():\n    from .tasks import run_training\n    return run_training\n"
    from_ml = "from .loop import fit\nfrom ..models import TrainingRun\nfrom ..runs import run_claim\n"
    assert violations(upward, "pipeline") == ["pipeline:2 imports training.services, which is not below it"]
    assert violations(local, "pipeline") == ["pipeline:4 imports training.tasks inside a function"]
    ready = "class C:\n    def ready(self):\n        from . import services\n"
    assert violations(ready, "apps") == [] and violations(ready, "runs") != []
    assert violations(from_ml, "ml", in_ml=True) == [
        "ml:2 imports training.models, which is not below it",
        "ml:3 imports training.runs, which is not below it",
    ]
