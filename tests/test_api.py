"""The declared plugin API: built-in plugins import nothing from streamcnn outside it."""

import ast
import importlib
from pathlib import Path

import streamcnn

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
PUBLIC_MODULES = {"streamcnn", "streamcnn.ops", "streamcnn.facedb", "streamcnn.recording"}


def _streamcnn_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for every import of a streamcnn module in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "streamcnn" or node.module.startswith("streamcnn."):
                out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names
                    if a.name == "streamcnn" or a.name.startswith("streamcnn.")]
    return out


def test_built_in_plugins_use_only_the_declared_api():
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) >= 8
    bad = []
    for path in files:
        for line, module, name in _streamcnn_imports(path):
            where = f"{path.relative_to(PLUGINS.parent)}:{line}"
            if module not in PUBLIC_MODULES:
                bad.append(f"{where}: imports {module} (not a public module)")
            elif name is not None and name not in importlib.import_module(module).__all__:
                bad.append(f"{where}: imports {name!r} from {module}, which is not in its __all__")
    assert bad == []


def test_the_check_itself_catches_a_private_import(tmp_path):
    f = tmp_path / "p.py"
    f.write_text("from streamcnn.config import load_config\nimport streamcnn.engine\nfrom streamcnn import Stage\n")
    assert _streamcnn_imports(f) == [(1, "streamcnn.config", "load_config"), (2, "streamcnn.engine", None),
                                     (3, "streamcnn", "Stage")]


def test_every_public_name_exists_and_is_documented():
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)  # AttributeError names a stale __all__ entry
            if callable(obj) and not isinstance(obj, type(streamcnn)):
                assert (obj.__doc__ or "").strip(), f"{module}.{name} has no docstring"
