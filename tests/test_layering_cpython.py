"""The layers of docs/design.md ("Principles", 9) hold in every import of the product code.

Every `import` and `from ... import` of every .py file under protocol/,
firmware/, hardware/, gateway/ and simulator/ is read with `ast` (imports
inside functions too; relative imports resolved against the file's
package) and checked against who may import whom:

    protocol   nothing of ours (pure: it must run on the node and the gateway)
    firmware   protocol; hardware only from firmware/main.py (the ESP32 entry builds the HAL)
    hardware   protocol at most (the firmware is given the HAL, never the reverse)
    gateway    protocol only
    simulator  all of the above
    tests/     nobody in the product
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("protocol", "firmware", "hardware", "gateway", "simulator")
OURS = PARTS + ("tests",)

# part -> the other parts of ours it may import (its own is always allowed)
ALLOWED = {
    "protocol": (),
    "firmware": ("protocol",),
    "hardware": ("protocol",),
    "gateway": ("protocol",),
    "simulator": ("protocol", "firmware", "hardware", "gateway"),
}
# file -> extra parts that file alone may import
EXCEPTIONS = {
    "firmware/main.py": ("hardware",),
}


def _package(rel):
    """Where a file's relative imports start: gateway/web/app.py (and gateway/web/__init__.py) -> gateway.web."""
    return ".".join(rel.parts[:-1])


def imported_modules(path, rel):
    """(line, dotted name) for every import in the file, relative ones resolved.

    `from m import a` yields m.a (a module of m, or a name in it); a relative
    import that climbs above the top package yields "." * level + name,
    which no rule allows."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = _package(rel).split(".")
                if node.level > len(package):
                    found.append((node.lineno, "." * node.level + module))
                    continue
                module = ".".join(package[:len(package) - node.level + 1] + ([module] if module else []))
            found.extend((node.lineno, module + "." + alias.name) for alias in node.names)
    return sorted(found)


def _why(part, top):
    if top == "tests":
        return "product code must not import tests"
    if not top:
        return "a relative import above the top-level package %s" % part
    if part == "firmware" and top == "hardware":
        return "firmware imports hardware only from firmware/main.py"
    return "%s may import %s" % (part, ", ".join(ALLOWED[part]) or "nothing of ours")


def violations(root, parts=PARTS):
    """'file:line: imports X (forbidden: why)' for every import that breaks a layer rule."""
    out = []
    for part in parts:
        for path in sorted((root / part).rglob("*.py")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            allowed = (part,) + ALLOWED[part] + EXCEPTIONS.get(rel.as_posix(), ())
            for line, module in imported_modules(path, rel):
                top = module.split(".")[0]
                if (top in OURS or not top) and top not in allowed:
                    out.append("%s:%d: imports %s (forbidden: %s)" % (rel.as_posix(), line, module, _why(part, top)))
    return out


def test_every_import_respects_the_layers():
    found = violations(ROOT)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_the_checker_finds_imports_the_repository_really_has():
    # a checker that reads nothing passes everything: it must see known imports
    assert (19, "protocol.topics") in imported_modules(ROOT / "protocol" / "plan.py", Path("protocol/plan.py"))
    main = imported_modules(ROOT / "firmware" / "main.py", Path("firmware/main.py"))
    assert any(name == "hardware.esp32.Esp32Hal" for _, name in main)  # imported inside a function


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_checker_reports_planted_violations(tmp_path):
    for part in PARTS:
        _write(tmp_path, part + "/__init__.py", "")
    _write(tmp_path, "protocol/topics.py", "import json\nfrom protocol import errors\n")  # fine
    _write(tmp_path, "protocol/bad.py", "import os\n\n\ndef f():\n    from firmware.store import Store\n")
    _write(tmp_path, "firmware/node.py", "from protocol import topics\nfrom hardware.softboard import SoftBoard\n")
    _write(tmp_path, "firmware/main.py", "def main():\n    from hardware.esp32 import Esp32Hal\n")  # allowed
    _write(tmp_path, "hardware/esp32.py", "from protocol.messages import VALID_TIME_MIN\nimport firmware.store\n")
    _write(tmp_path, "gateway/sub/__init__.py", "")
    _write(tmp_path, "gateway/sub/api.py", "from .. import service\nfrom ...simulator import runner\n")
    _write(tmp_path, "gateway/service.py", "import simulator.hosts as h\nfrom hardware import boards\n")
    _write(tmp_path, "simulator/hosts.py", "import firmware.node, gateway.api, hardware\nimport tests.portable\n")
    api = imported_modules(tmp_path / "gateway/sub/api.py", Path("gateway/sub/api.py"))
    assert (1, "gateway.service") in api  # resolved against the file's package
    found = violations(tmp_path)
    assert sorted(found) == [
        "firmware/node.py:2: imports hardware.softboard.SoftBoard"
        " (forbidden: firmware imports hardware only from firmware/main.py)",
        "gateway/service.py:1: imports simulator.hosts (forbidden: gateway may import protocol)",
        "gateway/service.py:2: imports hardware.boards (forbidden: gateway may import protocol)",
        "gateway/sub/api.py:2: imports ...simulator (forbidden: a relative import above the top-level package gateway)",
        "hardware/esp32.py:2: imports firmware.store (forbidden: hardware may import protocol)",
        "protocol/bad.py:5: imports firmware.store.Store (forbidden: protocol may import nothing of ours)",
        "simulator/hosts.py:2: imports tests.portable (forbidden: product code must not import tests)",
    ], "\n".join(found)
