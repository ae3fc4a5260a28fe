"""Print the architecture figures of the package ``snnify/``.

Import cycles between modules (imports inside functions included), private
names imported from another module, reads of Keras internals outside
``snnify/keras_graph.py``, and the longest functions, classes and files.
Exits with 1 when a goal is missed (no cycle, no private import, no Keras
internal outside keras_graph, no function over 100 lines, no class over 300).

    python tools/architecture.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "snnify"
# attributes of Keras objects that Keras does not document
KERAS_INTERNALS = {"_keras_history", "_nodes_by_depth", "_functional", "_inbound_nodes"}
MAX_FUNCTION, MAX_CLASS = 100, 300


def modules() -> tuple[dict[str, ast.Module], dict[str, int]]:
    """The syntax tree and the number of lines of every module, by name."""
    trees, lines = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        source = path.read_text()
        trees[name] = ast.parse(source, str(path))
        lines[name] = len(source.splitlines())
    return trees, lines


def imports(name: str, tree: ast.Module, known: set, packages: set):
    """``(module imported, name imported or None)`` for every import in ``tree``."""
    package = name if name in packages else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full, None) if full in known else (base, alias.name)


def cycles(edges: dict) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def longest(trees: dict, kind) -> list[tuple[int, str]]:
    spans = [
        (node.end_lineno - node.lineno + 1, f"{name}.{node.name}")
        for name, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, kind)
    ]
    return sorted(spans, reverse=True)


def main() -> int:
    trees, lines = modules()
    known = set(trees)
    packages = {n for n in known if (PACKAGE.parent / n.replace(".", "/")).is_dir()}
    edges, private, internals = {}, [], []
    for name, tree in trees.items():
        for target, imported in imports(name, tree, known, packages):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if not target or target == name:
                continue
            edges.setdefault(name, set()).add(target)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{name} <- {target}.{imported}")
        if name != "snnify.keras_graph":
            for node in ast.walk(tree):
                attribute = getattr(node, "attr", None) or getattr(node, "value", None)
                if attribute in KERAS_INTERNALS:
                    internals.append(f"{name}:{node.lineno} {attribute}")
    sys.setrecursionlimit(10_000)
    found = cycles(edges)
    functions = longest(trees, (ast.FunctionDef, ast.AsyncFunctionDef))
    classes = longest(trees, ast.ClassDef)
    files = sorted(((n, name) for name, n in lines.items()), reverse=True)
    print("import cycles:", found or "none")
    print("private names imported from another module:", private or "none")
    print("Keras internals outside keras_graph:", internals or "none")
    print("longest functions:", functions[:3])
    print("longest classes:", classes[:3])
    print("longest files:", files[:3])
    ok = (
        not found
        and not private
        and not internals
        and functions[0][0] <= MAX_FUNCTION
        and classes[0][0] <= MAX_CLASS
    )
    print(
        f"architecture: {len(found)} import cycles, {len(private)} private imports, "
        f"{len(internals)} Keras internals outside keras_graph, longest function "
        f"{functions[0][0]} lines ({functions[0][1]}), longest class "
        f"{classes[0][0]} lines ({classes[0][1]}) (goals: 0, 0, 0, <= "
        f"{MAX_FUNCTION}, <= {MAX_CLASS})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
