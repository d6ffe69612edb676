"""The core is a plain library: nothing in ldifs_core may depend on the UI."""
import re

from ldifs_core.paths import PROJECT_ROOT

STREAMLIT_IMPORT = re.compile(r"^\s*(import\s+streamlit|from\s+streamlit)", re.MULTILINE)


def test_ldifs_core_never_imports_streamlit():
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "ldifs_core").rglob("*.py")
                 if STREAMLIT_IMPORT.search(p.read_text())]
    assert offenders == []


def test_importing_the_core_does_not_load_streamlit():
    import subprocess
    import sys

    code = "import sys, ldifs_core.runner, ldifs_core.cli; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_listing_and_labelling_datasets_does_not_import_torch():
    """The Runs and Launch pages list every dataset on each draw: a fresh server's first sessions must not wait
    the seconds torch and torchvision take to import (the worker imports them when a run needs them)."""
    import subprocess
    import sys

    code = ("import sys; from ldifs_core.datasets import known_datasets; from app import launch_checks; "
            "[launch_checks.dataset_label(name) for name in known_datasets()]; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "False"


def imports_of(path) -> set[str]:
    """Every module a file names in an import statement, at its top or inside a function (a lazy import is still a
    dependency: it only moves the moment it is paid). Imports under `if TYPE_CHECKING:` are for annotations only
    and never run, so they are no dependency."""
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named.add(node.module)
            named.update(f"{node.module}.{alias.name}" for alias in node.names)
    return named


def core_modules() -> dict[str, object]:
    modules = {}
    for path in (PROJECT_ROOT / "ldifs_core").rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_the_library_never_imports_the_scripts():
    """scripts/ makes the shipped files (bank, model, tables, λ grid) from the library, never the other way."""
    offenders = sorted(name for name, path in core_modules().items()
                       if any(imported == "scripts" or imported.startswith("scripts.") for imported in imports_of(path)))
    assert offenders == []


def import_graph() -> dict[str, set[str]]:
    """ldifs_core module -> the ldifs_core modules it imports. A submodule's use of its own parent package (its
    __init__, the package's facade that loads submodules on demand) is not counted as an edge."""
    modules = core_modules()

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {name: {dep for imported in imports_of(path) if (dep := module_of(imported))
                   and dep != name and not name.startswith(dep + ".")}
            for name, path in modules.items()}


def test_no_import_cycles_inside_the_core():
    graph = import_graph()
    cycles = []

    def walk(module: str, trail: list[str]) -> None:
        for dep in sorted(graph[module]):
            if dep in trail:
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in finished:
                walk(dep, trail + [dep])
        finished.add(module)

    finished: set[str] = set()
    for module in sorted(graph):
        if module not in finished:
            walk(module, [module])
    assert cycles == []
