"""The package's shape: the core never needs gradio, no import circles, arrows point down (wings use the ground
floor, never the other way; strokes never need Stable Diffusion)."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CORE = ROOT / "diffsketch_core"
WINGS = {"diffusion", "style", "strokes", "extractors", "picture"}
# which wing may import which (besides the ground floor): style stands on the diffusion backbones and may use
# extractors (teachers, starting sketches); sketch -> picture steers SD with extractor networks and style losses;
# diffusion may use extractors (ControlNet control images); strokes and extractors stand alone
ALLOWED = {"style": {"diffusion", "extractors"}, "diffusion": {"extractors"}, "strokes": set(), "extractors": set(),
           "picture": {"diffusion", "extractors", "style"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every diffsketch_core module this file imports, at any depth (function-level imports count too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("diffsketch_core"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x` imports module x
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diffsketch_core"))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in CORE.rglob("*.py")}
    return {m: {d for d in _imports(p) if d in files and d != m} for m, p in files.items()}


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in WINGS else None


def test_no_import_circle():
    graph, state = _graph(), {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import circle: " + " -> ".join(path + [m])
        state[m] = "open"
        for d in graph[m]:
            # a package's __init__ importing its own submodules is how packages expose them, not a circle
            if not (m.endswith(d.rsplit(".", 1)[0]) and d.startswith(m + ".")):
                visit(d, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_arrows_point_down():
    for m, deps in _graph().items():
        wing = _wing(m)
        for d in deps:
            dw = _wing(d)
            if dw is None or dw == wing:
                continue
            assert wing is not None, f"ground-floor module {m} imports the {dw} wing ({d})"
            assert dw in ALLOWED[wing], f"{m} ({wing}) imports {d} ({dw})"


def test_every_core_module_imports_without_gradio():
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['gradio'] = None  # any `import gradio` now raises ImportError\n"
        "import diffsketch_core\n"
        "names = [m.name for m in pkgutil.walk_packages(diffsketch_core.__path__, 'diffsketch_core.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "print(len(names))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    files = [p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE]
    assert int(out.stdout.split()[-1]) == len(files)  # every module was walked (a folder without __init__ is not)


def test_app_is_only_the_assembly():
    assert len((ROOT / "app.py").read_text().splitlines()) < 150
