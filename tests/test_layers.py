"""The layers hold: imports point down only, checked in fresh interpreters.

design (theory) imports no kernels, pools, jobs or experiments; pools import no
design, jobs or experiments; nothing but the CLI imports the experiments; and
``import sparsecoded`` loads no Dask.  Function-level imports count too: the
static scan reads every import statement in every module.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

import sparsecoded

PACKAGE = pathlib.Path(sparsecoded.__file__).parent


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(m for m in sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(out.split())


def _sparsecoded(modules: set[str], prefix: str) -> set[str]:
    return {m for m in modules if m == prefix or m.startswith(prefix + ".")}


def test_import_sparsecoded_loads_no_dask_and_no_layer():
    mods = _loaded_after("import sparsecoded")
    assert not {m for m in mods if m.split(".")[0] in {"distributed", "dask", "matplotlib"}}
    assert not _sparsecoded(mods, "sparsecoded.pools")
    assert not _sparsecoded(mods, "sparsecoded.experiments")


def test_design_loads_nothing_above_it():
    mods = _loaded_after("import sparsecoded.design as d; d.design_mv(12, 9, seed=0)")
    for above in ("kernels", "pools", "jobs", "rounds", "decode", "experiments", "cli"):
        assert not _sparsecoded(mods, f"sparsecoded.{above}"), above
    assert "sparsecoded._core" not in mods
    assert not {m for m in mods if m.split(".")[0] in {"distributed", "dask"}}


def test_pools_load_no_design_jobs_or_experiments():
    mods = _loaded_after(
        "import sparsecoded.pools.base, sparsecoded.pools.inline, sparsecoded.pools.local"
    )
    for above in ("design", "jobs", "rounds", "decode", "experiments", "cli"):
        assert not _sparsecoded(mods, f"sparsecoded.{above}"), above


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every sparsecoded module a file imports, at any depth (function-level included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sparsecoded")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sparsecoded"):
                continue
            subs = set()
            for alias in node.names:  # "from . import kernels" imports a module
                sub = f"{target}.{alias.name}"
                if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / sub.replace(".", "/") / "__init__.py"
                ).exists():
                    subs.add(sub)
            found |= subs
            if len(subs) < len(node.names):  # some names come from the package itself
                found.add(target)
        found.discard(name)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sparsecoded"


FORBIDDEN = {
    "design": {
        "kernels",
        "_validation",
        "_core",
        "pools",
        "jobs",
        "rounds",
        "decode",
        "experiments",
        "cli",
        "demo",
    },
    "pools": {"design", "jobs", "rounds", "decode", "experiments", "cli", "demo"},
    "kernels": {"design", "pools", "jobs", "rounds", "decode", "experiments", "cli"},
    "decode": {"pools", "jobs", "rounds", "experiments", "cli"},
    "rounds": {"jobs", "experiments", "cli", "demo"},
    "jobs": {"experiments", "cli", "demo"},
    "errors": {"design", "kernels", "pools", "jobs", "rounds", "decode", "experiments"},
    "stragglers": {"design", "kernels", "pools", "jobs", "rounds", "decode", "experiments"},
}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_imports_point_down(path):
    here = _layer(_module_name(path))
    bad = sorted(m for m in _imports(path) if _layer(m) in FORBIDDEN.get(here, set()))
    assert not bad, f"{_module_name(path)} ({here}) imports {bad}"
    if here not in {"cli", "experiments"}:
        assert not [m for m in _imports(path) if _layer(m) == "experiments"]


def test_no_import_cycle_between_modules():
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph or nxt.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                pytest.fail(f"import cycle: {' -> '.join([*stack, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_no_module_over_700_lines():
    long = {
        _module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 700
    }
    assert not long, long


def test_all_lists_the_public_api_not_modules():
    names = set(sparsecoded.__all__)
    assert {
        "design_mv",
        "design_mm",
        "MVCode",
        "MMCode",
        "certify",
        "Certificate",
        "LocalPool",
        "InlinePool",
        "CodedMatVec",
        "CodedMatMat",
        "NotEnoughWorkers",
        "RoundTimeout",
        "openmp_available",
    } <= names
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir()
    }
    assert not names & modules
