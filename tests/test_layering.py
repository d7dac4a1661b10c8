"""The import graph runs one way: layers <- models <- inference / export /
training <- cli, datasets <- training, and nothing imports the CLI.

The graph is read from the source (AST), not from `sys.modules`: every
`import`, including the ones inside functions, is an edge, so a cycle cannot
hide behind a lazy import. Adding a module: give it a layer in `LAYERS`.
"""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Where each part of the `tfdeblur` package lives in the checkout (setup.cfg's package_dir).
PACKAGE_DIRS = {"tfdeblur": "tfdeblur", "tfdeblur.models": "models", "tfdeblur.datasets": "datasets"}

# Module (or package) -> layer; the longest matching prefix wins.
LAYERS = {
    # No tfdeblur imports at all: anything may use these.
    "tfdeblur.serialization": "base",
    "tfdeblur.errors": "base",
    "tfdeblur.io": "base",
    "tfdeblur.photo_metadata": "base",  # EXIF orientation and ICC of photos (used by io)
    "tfdeblur.timing": "base",
    "tfdeblur.checksum": "base",  # the .sha256 sidecars of .keras files
    "tfdeblur.lazy_registry": "base",
    "tfdeblur.console": "base",
    "tfdeblur.keras_private": "base",
    "tfdeblur.bias_grad": "base",  # bf16 bias gradients summed in float32 (TF's private gradient registry)
    "tfdeblur.quantization": "base",  # int8 calibration ranges XNNPACK accepts (TFLite flatbuffers only)
    "tfdeblur.weights": "base",  # the weight-file format; packing new weights is an application
    "tfdeblur.layers": "layers",
    # Losses, metrics, schedules, the model base class, benchmark protocols.
    "tfdeblur.losses": "core",
    "tfdeblur.perceptual": "core",
    "tfdeblur.metrics": "core",
    "tfdeblur.schedules": "core",
    "tfdeblur.deblur_model": "core",
    "tfdeblur.protocols": "core",
    "tfdeblur.precision": "core",  # bf16 or fp32 on this machine (training and restoring)
    "tfdeblur.kernel_refine": "core",  # uniform-blur kernel estimate + Richardson-Lucy (numpy, OpenCV)
    "tfdeblur.models": "models",
    "tfdeblur.tlc": "models",
    "tfdeblur.datasets": "datasets",
    "tfdeblur.inference": "apps",
    "tfdeblur.evaluate": "apps",
    "tfdeblur.export": "apps",
    "tfdeblur.deblur_files": "apps",
    "tfdeblur.weights.pack": "apps",
    "tfdeblur.weights.__main__": "apps",
    "tfdeblur.training": "training",
    "tfdeblur.bench": "tools",
    "tfdeblur.cli": "cli",
}
# Layer -> the layers it may import (besides itself).
ALLOWED = {
    "base": set(),
    "layers": {"base"},
    "core": {"base", "layers"},
    "models": {"base", "layers", "core"},
    "datasets": {"base"},
    "apps": {"base", "layers", "core", "models", "datasets"},
    "training": {"base", "layers", "core", "models", "datasets", "apps"},
    "tools": {"base", "layers", "core", "models", "datasets", "apps", "training"},
    "cli": {"base", "layers", "core", "models", "datasets", "apps", "training", "tools"},
}
# The package root is a facade (`tfdeblur.deblur`, `__version__`) that every
# submodule's import runs anyway; edges to it, and its own lazy ones, are not layering.
ROOT = "tfdeblur"


def package_sources(repo=REPO):
    """{module name: source text} of every module of the package."""
    sources = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((repo / folder).rglob("*.py")):
            parts = list(path.relative_to(repo / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            sources[".".join([package, *parts])] = path.read_text()
    return sources


def _owner(name, modules):
    """The module `name` (a module or a name inside one) resolves to."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else None


def import_graph(sources):
    """{module: {imported module: line}} over `sources`, every import counted
    (module level or not), with the packages an import initializes."""
    modules = set(sources)
    graph = {}
    for module, text in sources.items():
        edges = {}
        for node in ast.walk(ast.parse(text, filename=module)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = _owner(name, modules)
                while target:  # importing a.b.c runs a.b first
                    if target != module and not module.startswith(target + "."):
                        edges.setdefault(target, node.lineno)
                    target = target.rpartition(".")[0] if "." in target else None
        edges.pop(ROOT, None)
        graph[module] = edges
    return graph


def layer_of(module):
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYERS.get(best)


def upward_imports(graph):
    """'importer -> imported (line N): layer A may not import layer B' for each bad edge."""
    bad = []
    for module, edges in sorted(graph.items()):
        if module == ROOT:
            continue
        here = layer_of(module)
        if here is None:
            bad.append(f"{module}: in no layer; add it to LAYERS in tests/test_layering.py")
            continue
        for target, line in sorted(edges.items()):
            there = layer_of(target)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{module} -> {target} (line {line}): layer {here!r} may not import layer {there!r}")
    return bad


def cycles(graph):
    """The import cycles (strongly connected components), each as 'a -> b -> ... -> a'."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(_cycle_path(graph, sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph, component):
    """One cycle through the component's first module, as a readable path."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                return " -> ".join(paths[v] + [start])
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return " <-> ".join(component)


def _imports_of(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from ((f"{node.module}.{a.name}", node.lineno) for a in node.names)


def test_every_module_has_a_layer_and_imports_only_below_it():
    assert upward_imports(import_graph(package_sources())) == []


def test_no_import_cycles():
    assert cycles(import_graph(package_sources())) == []


def test_nothing_imports_the_cli():
    """Only the `python cli.py` launcher may; benchmarks use the library's own names."""
    offenders = []
    for folder in ("tfdeblur", "models", "datasets", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "tfdeblur" / "cli.py":
                continue
            for name, line in _imports_of(path):
                if name == "tfdeblur.cli" or name.startswith("tfdeblur.cli."):
                    offenders.append(f"{path.relative_to(REPO)}:{line}")
    assert offenders == []


@pytest.mark.parametrize("module, planted, expected", [
    ("tfdeblur.layers.padding", "from tfdeblur.cli import main",
     "tfdeblur.layers.padding -> tfdeblur.cli (line 1): layer 'layers' may not import layer 'cli'"),
    ("tfdeblur.models.mtwdn", "import tfdeblur.training.run",
     "tfdeblur.models.mtwdn -> tfdeblur.training (line 1): layer 'models' may not import layer 'training'"),
    ("tfdeblur.datasets.spec", "def f():\n    from tfdeblur.inference import load_model",
     "tfdeblur.datasets.spec -> tfdeblur.inference (line 2): layer 'datasets' may not import layer 'apps'"),
])
def test_a_planted_upward_import_is_named(module, planted, expected):
    sources = package_sources()
    sources[module] = planted + "\n" + sources[module]
    assert expected in upward_imports(import_graph(sources))


def test_a_planted_cycle_is_named():
    sources = package_sources()
    # pairs is imported by stream; a lazy import back closes a cycle inside one layer.
    sources["tfdeblur.datasets.pairs"] += "\n\ndef _f():\n    from tfdeblur.datasets.stream import train_stream\n"
    found = cycles(import_graph(sources))
    assert found == ["tfdeblur.datasets.pairs -> tfdeblur.datasets.stream -> tfdeblur.datasets.pairs"]


def test_a_module_without_a_layer_is_named():
    sources = package_sources()
    sources["tfdeblur.newthing"] = "import os\n"
    assert "tfdeblur.newthing: in no layer; add it to LAYERS in tests/test_layering.py" in upward_imports(
        import_graph(sources))


def test_one_atomic_writer():
    """Files appear through `tfdeblur.io.atomic_path` / `atomic_write` only."""
    offenders = []
    for folder in ("tfdeblur", "models", "datasets", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "tfdeblur" / "io.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "os.replace(" in line or "os.rename(" in line:
                    offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


def test_private_keras_apis_live_in_one_module():
    """`keras.src` and private Model members only in tfdeblur/keras_private.py."""
    import re

    private = re.compile(r"keras\.src|\._(compute_loss|loss_tracker|symbolic_build|aggregate_additional_loss)\b")
    offenders = []
    for folder in ("tfdeblur", "models", "datasets"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "tfdeblur" / "keras_private.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if private.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


def test_installed_keras_is_in_the_declared_range():
    import configparser

    import keras
    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = [Requirement(line) for line in config["options"]["install_requires"].splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    declared = [r for r in requirements if r.name == "keras"]
    assert declared, "setup.cfg must declare keras (tfdeblur/keras_private.py uses private APIs)"
    assert keras.__version__ in declared[0].specifier
