"""The package's import rules (docs/architecture.md), checked on the source with `ast`: nothing here imports
bgedit_cli or torch, so the checks take a fraction of a second.

- Layers: a module imports only its own layer and the layers below it (`LAYERS`, lowest first), at the top of the
  file or inside a function alike; nothing outside `cli/` imports `cli/`; the units of one layer import each other
  without cycles.
- Start-up: `bgedit --help` and every command's option parsing import no torch (what `cli/` and the torch-free
  modules import at module level, followed through the package).
- The doc: docs/architecture.md lists every module file once and every lazy import outside `cli/`, so neither
  list goes stale silently.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import gc
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bgedit_cli"
DOC = REPO / "docs" / "architecture.md"
ROOT = "bgedit_cli"

# Lowest first. A unit is a module or package path relative to bgedit_cli ("" is bgedit_cli/__init__.py, which
# holds __version__); a module belongs to the longest unit that contains it, so `data.ade20k_classes` sits in the
# base layer while the rest of `data` is a layer of its own.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("", "errors", "config", "console", "fileio", "data.ade20k_classes")),
    ("core", ("bundle", "runtime", "distributed", "checkpoint", "latent", "io", "download", "weights")),
    ("data", ("data",)),
    ("nn", ("nn",)),
    ("metrics/convert", ("metrics", "convert")),
    ("losses", ("losses",)),
    ("pipelines", ("pipelines",)),
    ("training", ("training",)),
    ("cli", ("cli", "__main__")),
)
CLI_UNITS = ("cli", "__main__")
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}

# Imported by `bgedit --help` (cli/, module level) or meant to be read without torch (docs/architecture.md).
TORCH_FREE = ("errors", "config", "console", "fileio", "bundle", "download", "weights", "training.configs")
HEAVY = ("torch", "torchvision", "numpy", "scipy", "torch_fidelity", "clip", "lpips", "safetensors")


@dataclasses.dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to bgedit_cli/ ("nn/ops.py")
    line: int
    target: str  # the module imported; `from m import n` gives "m.n" where that is a module of the package
    function: str | None  # the function holding a lazy import; None at module level

    @property
    def where(self) -> str:
        return f"{ROOT}/{self.path}:{self.line}"


def module_name(path: str) -> str:
    """"nn/ops.py" -> "bgedit_cli.nn.ops"; "data/synth/__init__.py" -> "bgedit_cli.data.synth"."""
    parts = [ROOT, *path[:-3].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


@functools.lru_cache(maxsize=None)
def real_sources() -> dict[str, str]:
    return package_sources()


def _statements(body: list, function: str | None, out: list) -> None:
    """Import statements anywhere in `body` (imports are statements: only statement bodies are walked)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, function))
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):  # class bodies run at import time
            child = getattr(node, field, None)
            if isinstance(child, list):
                _statements(child, inner, out)


@functools.lru_cache(maxsize=None)
def _raw_imports(path: str, source: str) -> tuple[tuple[int, str | None, str, tuple[str, ...] | None], ...]:
    """(line, function, module, names) per statement: `import a.b` gives ("a.b", None), `from m import x, y`
    ("m", ("x", "y")) with a relative `m` made absolute."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: list = []
    gc_was_on = gc.isenabled()
    gc.disable()  # parsing makes many small objects; with torch loaded (conftest), collections would triple the time
    try:
        _statements(ast.parse(source, filename=path).body, None, found)
    finally:
        if gc_was_on:
            gc.enable()
    out = []
    for node, function in found:
        if isinstance(node, ast.Import):
            out += [(node.lineno, function, alias.name, None) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
        out.append((node.lineno, function, base, tuple(a.name for a in node.names)))
    return tuple(out)


def imports(sources: dict[str, str]) -> list[Import]:
    """Every import statement of every file (module level and inside functions), relative ones resolved."""
    return list(_imports(tuple(sources.items())))


@functools.lru_cache(maxsize=None)
def _imports(sources: tuple[tuple[str, str], ...]) -> tuple[Import, ...]:
    modules = {module_name(p) for p, _ in sources}
    found = []
    for path, source in sources:
        for line, function, base, names in _raw_imports(path, source):
            targets = [base] if names is None else sorted({f"{base}.{n}" if f"{base}.{n}" in modules else base
                                                            for n in names})
            found += [Import(path, line, target, function) for target in targets]
    return tuple(found)


def unit_of(module: str) -> str | None:
    """The unit (key of LAYER_OF) of a bgedit_cli module, None for a module in no layer."""
    rel = module[len(ROOT) + 1:] if module.startswith(ROOT + ".") else "" if module == ROOT else None
    if rel is None:
        return None
    matches = [u for u in LAYER_OF if rel == u or (u and rel.startswith(u + "."))]
    return max(matches, key=len) if matches else None


def layer_name(unit: str) -> str:
    return LAYERS[LAYER_OF[unit]][0]


def own(found: list[Import]) -> list[Import]:
    return [i for i in found if i.target == ROOT or i.target.startswith(ROOT + ".")]


def layer_violations(sources: dict[str, str]) -> list[str]:
    """One line per import that points up the layers, or into cli/ from outside it."""
    out = []
    for imp in own(imports(sources)):
        src, dst = unit_of(module_name(imp.path)), unit_of(imp.target)
        if src is None or dst is None or src == dst:
            continue  # a module in no layer is test_every_module_is_in_a_layer's failure
        how = f"lazily in {imp.function}()" if imp.function else "at module level"
        if dst in CLI_UNITS and src not in CLI_UNITS:
            out.append(f"{imp.where}: imports {imp.target} {how}: nothing outside cli/ imports the CLI")
        elif LAYER_OF[dst] > LAYER_OF[src]:
            out.append(f"{imp.where}: imports {imp.target} {how}: layer {layer_name(src)!r} ({src or ROOT}) may "
                       f"not import the higher layer {layer_name(dst)!r} ({dst})")
    return out


def unit_cycles(sources: dict[str, str]) -> list[str]:
    """Cycles among units (a package, or a module listed in LAYERS), each with one import per edge."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in own(imports(sources)):
        src, dst = unit_of(module_name(imp.path)), unit_of(imp.target)
        if src is not None and dst is not None and src != dst:
            edges.setdefault(src, {}).setdefault(dst, imp)
    cycles: list[str] = []
    state: dict[str, str] = {}  # absent: not visited; "open": on the current path; "done"

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "open"
        for nxt in sorted(edges.get(unit, {})):
            if state.get(nxt) == "open":
                loop = path[path.index(nxt):] + [nxt]
                cycles.append(" -> ".join(f"{a or ROOT} ({edges[a][b].where})" for a, b in zip(loop, loop[1:]))
                              + f" -> {nxt or ROOT}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[unit] = "done"

    for unit in sorted(edges):
        if unit not in state:
            visit(unit, [unit])
    return cycles


def eager_imports(sources: dict[str, str], start: str) -> dict[str, Import]:
    """What importing `start` imports, followed through the package at module level only (with each package's
    __init__ on the way): top-level name of every outside module -> the first import of it that was met."""
    found = [i for i in imports(sources) if i.function is None]
    by_module: dict[str, list[Import]] = {}
    for imp in found:
        by_module.setdefault(module_name(imp.path), []).append(imp)
    outside: dict[str, Import] = {}
    todo, done = [start], set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for name in (".".join(parts[:n]) for n in range(1, len(parts) + 1)):  # parents' __init__ run first
            if name in done:
                continue
            done.add(name)
            for imp in by_module.get(name, []):
                if imp.target == ROOT or imp.target.startswith(ROOT + "."):
                    todo.append(imp.target)
                else:
                    outside.setdefault(imp.target.split(".")[0], imp)
    return outside


def lazy_imports(sources: dict[str, str]) -> list[Import]:
    """Imports inside a function body, outside cli/ (where importing inside the command is the rule)."""
    return [i for i in imports(sources) if i.function is not None and unit_of(module_name(i.path)) not in CLI_UNITS]


def doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"{DOC}: no '## {title}' section"
    return match.group(1)


# ----------------------------------------------------------------------------------------------------------
# The rules on the real tree.


def test_every_module_is_in_a_layer():
    missing = [p for p in real_sources() if unit_of(module_name(p)) is None]
    assert not missing, f"modules in no layer (add them to LAYERS and docs/architecture.md): {missing}"
    units = {unit_of(module_name(p)) for p in real_sources()}
    assert units == set(LAYER_OF), f"LAYERS names units that do not exist: {sorted(set(LAYER_OF) - units)}"


def test_no_import_points_up_the_layers():
    violations = layer_violations(real_sources())
    assert not violations, "imports against the layer order (docs/architecture.md):\n" + "\n".join(violations)


def test_units_of_a_layer_import_each_other_without_cycles():
    cycles = unit_cycles(real_sources())
    assert not cycles, "import cycles between units:\n" + "\n".join(cycles)


def test_cli_start_up_and_torch_free_modules_import_nothing_heavy():
    starts = sorted({module_name(p) for p in real_sources() if p.startswith("cli/")}
                    | {f"{ROOT}.{m}" for m in TORCH_FREE})
    heavy = [f"importing {start} imports {name} ({imp.where})" for start in starts
             for name, imp in sorted(eager_imports(real_sources(), start).items()) if name in HEAVY]
    assert not heavy, "import these inside the functions that need them:\n" + "\n".join(heavy)


# ----------------------------------------------------------------------------------------------------------
# The checker itself, on planted sources.


def test_checker_reports_a_planted_upward_import_with_file_and_line():
    sources = dict(real_sources())
    sources["nn/planted.py"] = ('"""Pretends to be a network module."""\n'
                                "from bgedit_cli.cli import app\n"
                                "from bgedit_cli.nn import ops\n"
                                "from bgedit_cli import errors\n\n\n"
                                "def build():\n"
                                "    from ..pipelines.models import load_models\n"
                                "    import bgedit_cli.training.runner\n"
                                "    from . import stylegan2\n")
    violations = layer_violations(sources)
    assert len(violations) == 3, violations
    assert violations[0].startswith("bgedit_cli/nn/planted.py:2: imports bgedit_cli.cli.app at module level: "
                                    "nothing outside cli/ imports the CLI")
    assert violations[1].startswith("bgedit_cli/nn/planted.py:8: imports bgedit_cli.pipelines.models lazily in "
                                    "build(): layer 'nn' (nn) may not import the higher layer 'pipelines'")
    assert violations[2].startswith("bgedit_cli/nn/planted.py:9: imports bgedit_cli.training.runner lazily in build()")


def test_checker_resolves_relative_imports_and_the_base_modules():
    sources = {"__init__.py": "", "errors.py": "from .nn.ops import x\n", "nn/__init__.py": "", "nn/ops.py": "",
               "data/__init__.py": "", "data/ade20k_classes.py": "from . import ade20k\n", "data/ade20k.py": "",
               "io.py": "from .data import ade20k_classes\nfrom . import errors\n",
               "cli/__init__.py": "", "cli/app.py": "from bgedit_cli.pipelines import x\n"}
    assert layer_violations(sources) == [
        "bgedit_cli/errors.py:1: imports bgedit_cli.nn.ops at module level: layer 'base' (errors) may not import "
        "the higher layer 'nn' (nn)",
        "bgedit_cli/data/ade20k_classes.py:1: imports bgedit_cli.data.ade20k at module level: layer 'base' "
        "(data.ade20k_classes) may not import the higher layer 'data' (data)"]


def test_checker_reports_a_cycle_inside_a_layer():
    sources = {"metrics/__init__.py": "", "metrics/a.py": "from bgedit_cli.convert import b\n",
               "convert/__init__.py": "", "convert/b.py": "def f():\n    from bgedit_cli.metrics import a\n"}
    assert layer_violations(sources) == []
    assert unit_cycles(sources) == ["convert (bgedit_cli/convert/b.py:2) -> metrics (bgedit_cli/metrics/a.py:1) "
                                    "-> convert"]


def test_start_up_check_follows_module_level_imports_only():
    sources = {"__init__.py": "", "cli/__init__.py": "", "cli/app.py": "from bgedit_cli.training import configs\n",
               "training/__init__.py": "import os\n", "training/configs.py": "def f():\n    import torch\n",
               "training/runner.py": "import torch\n"}
    assert set(eager_imports(sources, "bgedit_cli.cli.app")) == {"os"}
    sources["training/configs.py"] = "from bgedit_cli.training import runner\n"
    assert eager_imports(sources, "bgedit_cli.cli.app")["torch"].where == "bgedit_cli/training/runner.py:1"


# ----------------------------------------------------------------------------------------------------------
# docs/architecture.md.


def test_architecture_doc_lists_every_module_and_no_other():
    listing = doc_section("Modules")
    named = re.findall(r"`([\w/]+\.py)`", listing)
    missing = [p for p in real_sources() if p not in named]
    assert not missing, f"docs/architecture.md '## Modules' does not list: {missing}"
    gone = sorted({p for p in named if p not in real_sources()})
    assert not gone, f"docs/architecture.md '## Modules' lists files that do not exist: {gone}"
    twice = sorted({p for p in named if named.count(p) > 1})
    assert not twice, f"docs/architecture.md '## Modules' lists these more than once: {twice}"


def test_architecture_doc_lists_every_lazy_import():
    rows: dict[tuple[str, str], str] = {}
    for line in doc_section("Lazy imports").splitlines():
        match = re.match(r"\|\s*`([\w/]+\.py)`\s*\|\s*`(\w+)`\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1), match.group(2)] = match.group(3)
    found = lazy_imports(real_sources())
    missing = [f"{i.where} {i.function}(): {i.target}" for i in found  # `module` or `module.sub` in its row
               if not re.search(rf"`{re.escape(i.target.removeprefix(ROOT + '.'))}[`.]",
                                rows.get((i.path, i.function), ""))]
    assert not missing, ("lazy imports not in docs/architecture.md '## Lazy imports' (file, function, module):\n"
                         + "\n".join(missing))
    stale = sorted(set(rows) - {(i.path, i.function) for i in found})
    assert not stale, f"docs/architecture.md '## Lazy imports' lists functions without a lazy import: {stale}"
