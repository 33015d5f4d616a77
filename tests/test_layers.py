"""The package's layers import downwards only: tda ← probing ← analysis, reporting ← callbacks.

Read from the source with ``ast`` (imports inside functions count too), so a lazy import up the
layers is caught as well.
"""

import ast
import pathlib

import topo_monitor

ROOT = pathlib.Path(topo_monitor.__file__).parent
LAYERS = {"tda": 0, "probing": 1, "analysis": 2, "reporting": 2, "callbacks": 3}


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("topo_monitor.")}


def test_no_module_imports_from_a_layer_above_or_beside_it():
    upward = []
    for layer, rank in LAYERS.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for module in _imports(path):
                target = module.split(".")[1]
                if target in LAYERS and target != layer and LAYERS[target] >= rank:
                    upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert upward == []
