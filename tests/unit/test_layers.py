"""The package keeps its shape: every import points down the layers (issue 18).

``streams/`` is built in layers, lowest first::

    vocabulary  config, errors, records, schemas, and the pure rules every layer reads
    kafka       streams.kafka: topics, commits, offsets, output, Faust glue, security, local broker
    stages      pipeline, publish, subscriptions, signing, fanout, delivery, retry, deadletter,
                log, health
    worker      app (wires the stages into one worker) and ops.metrics (watches them)
    tools       demo, sample receiver, benchmarks: drive the product from outside
    faces       api, cli, monitor: they call everything below; nothing below calls them

A module may import its own layer and the layers below, never above. Imports
under ``if TYPE_CHECKING:`` and inside functions count too: a type or a lazy
import is a dependency all the same. Among the faces, only the edges in
:data:`FACE_EDGES` are allowed. A new module must be placed in a layer here, so
the house cannot grow a room nobody has put on the plan.

A small check over ``ast`` rather than a linter dependency: the whole rule is
the table below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streams"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "vocabulary",
        (
            "streams",  # the package itself: __version__ only
            "streams.config",
            "streams.errors",
            "streams.records",
            "streams.schemas",
            "streams.tenants",
            # Pure rules that config validates settings with, and that topics and every
            # stage read: they import only errors, so they sit with the vocabulary.
            "streams.destinations",
            "streams.retry.schedule",
            # Logging and collector tuning import nothing of ours; every layer may log.
            "streams.ops",
            "streams.ops.logs",
            "streams.ops.gc_tuning",
        ),
    ),
    ("kafka", ("streams.kafka",)),
    (
        "stages",
        (
            "streams.pipeline",
            "streams.publish",
            "streams.subscriptions",
            "streams.signing",
            "streams.fanout",
            "streams.delivery",
            "streams.retry",
            "streams.deadletter",
            "streams.log",
            "streams.health",
        ),
    ),
    ("worker", ("streams.app", "streams.ops.metrics")),
    ("tools", ("streams.tools",)),
    (
        "faces",
        ("streams.api", "streams.cli", "streams.monitor", "streams.console", "streams.__main__"),
    ),
)

FACES = frozenset(
    ("streams.api", "streams.cli", "streams.monitor", "streams.console", "streams.__main__")
)

#: The only imports from one face into another, (importer room, imported module prefix).
FACE_EDGES = frozenset(
    (
        ("streams.__main__", "streams.cli"),  # `python -m streams`
        ("streams.cli", "streams.api"),  # `streams worker` serves the API; dlq parses times
        ("streams.cli", "streams.monitor"),  # `streams monitor` starts the monitor
        ("streams.monitor", "streams.cli.client"),  # the monitor asks the API for stats
        ("streams.api", "streams.console"),  # the worker's web server mounts the console
        ("streams.console", "streams.api"),  # the console calls the API's own scoped methods
        ("streams.console", "streams.monitor"),  # the live view samples like `streams monitor`
    )
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _matches(module: str, prefix: str) -> bool:
    if prefix == "streams":
        return module == "streams"
    return module == prefix or module.startswith(prefix + ".")


def _best(module: str, prefixes: tuple[str, ...] | frozenset[str]) -> str | None:
    hits = [p for p in prefixes if _matches(module, p)]
    return max(hits, key=len) if hits else None


def layer_of(module: str) -> int | None:
    """The index of the module's layer in :data:`LAYERS` (longest prefix wins)."""
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        hit = _best(module, prefixes)
        if hit is not None and (best is None or len(hit) > best[0]):
            best = (len(hit), index)
    return None if best is None else best[1]


def imports_of(module: str, source: str, known: set[str]) -> Iterator[str]:
    """Every ``streams`` module ``source`` imports, wherever the import statement sits."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "streams":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                anchor = module.split(".") if _is_package(module, known) else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "streams":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # `from streams.deadletter import replay` imports the module replay.
                yield candidate if candidate in known else base


def _is_package(module: str, known: set[str]) -> bool:
    return any(other.startswith(module + ".") for other in known)


def violations(module: str, source: str, known: set[str]) -> list[str]:
    """What is wrong with ``module``'s imports, one line each (empty when it keeps the rules)."""
    own = layer_of(module)
    if own is None:
        return [f"{module}: in no layer; place it in LAYERS of tests/unit/test_layers.py"]
    found = []
    for target in sorted(set(imports_of(module, source, known))):
        if target == module:
            continue
        theirs = layer_of(target)
        if theirs is None:
            found.append(f"{module} -> {target}: the target is in no layer")
            continue
        if theirs > own:
            found.append(
                f"{module} ({LAYERS[own][0]}) -> {target} ({LAYERS[theirs][0]}): imports upward"
            )
            continue
        room, target_room = _best(module, FACES), _best(target, FACES)
        if room and target_room and room != target_room:
            allowed = any(
                _matches(module, src) and _matches(target, dst) for src, dst in FACE_EDGES
            )
            if not allowed:
                found.append(f"{module} -> {target}: one face imports another")
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = [m for m in all_modules() if layer_of(m) is None]
    assert unplaced == []


def test_every_import_points_down_the_layers() -> None:
    modules = all_modules()
    known = set(modules)
    found = [
        line
        for module, path in modules.items()
        for line in violations(module, path.read_text(encoding="utf-8"), known)
    ]
    assert found == [], "\n".join(found)


def test_the_check_refuses_upward_and_face_imports() -> None:
    known = set(all_modules())
    # A Kafka module reaching up to a stage, lazily inside a function.
    lazy = "def f():\n    from streams.delivery.engine import DeliveryEngine\n"
    assert violations("streams.kafka.topics", lazy, known) == [
        "streams.kafka.topics (kafka) -> streams.delivery.engine (stages): imports upward"
    ]
    # A stage naming the app's type, even only for the type checker.
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from streams.app import x\n"
    assert violations("streams.health", typed, known) == [
        "streams.health (stages) -> streams.app (worker): imports upward"
    ]
    # `from package import module` resolves to the module, and faces stay apart.
    face = "from streams import cli\nfrom streams.cli import dlq\n"
    assert violations("streams.api.stats", face, known) == [
        "streams.api.stats -> streams.cli: one face imports another",
        "streams.api.stats -> streams.cli.dlq: one face imports another",
    ]
    assert violations("streams.cli.worker", "import streams.api\n", known) == []
    assert violations("streams.nowhere", "", known) == [
        "streams.nowhere: in no layer; place it in LAYERS of tests/unit/test_layers.py"
    ]
