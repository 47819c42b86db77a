"""gateway/ type-checks: `python -m mypy gateway/` under pyproject.toml's [tool.mypy].

The config asks every function of `gateway.*` to be annotated
(disallow_untyped_defs) and checks every body (check_untyped_defs); protocol/
stays unannotated (it runs on MicroPython too) and is read for types only.
hardware/ has its own check against the ESP32 stubs (tests/hardware/test_esp32_cpython.py).
"""
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mypy(tree, cache):
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is a [dev] dependency (make setup installs it)")
    cmd = [
        sys.executable, "-m", "mypy",
        "--config-file", str(tree / "pyproject.toml"),
        "--cache-dir", str(cache),
        "--no-color-output",
        "gateway/",
    ]
    run = subprocess.run(cmd, cwd=str(tree), capture_output=True, text=True, timeout=600)
    return run.returncode, (run.stdout + run.stderr).strip()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One mypy cache for the module: the planted copy is then checked incrementally (seconds, not 20)."""
    return tmp_path_factory.mktemp("mypy-cache")


def test_gateway_type_checks(cache):
    code, out = _mypy(ROOT, cache)
    assert code == 0, "mypy gateway/ failed:\n" + out


def test_the_config_makes_gateway_functions_annotated():
    """The check means what it says only while the config asks for annotations in gateway.*."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text[text.index("[tool.mypy]"):]
    assert 'module = ["gateway", "gateway.*"]' in section
    assert "disallow_untyped_defs = true" in section and "check_untyped_defs = true" in section


# Planted in a copy of gateway/: one public function without annotations, one type error.
PLANTED = '''

def planted_untyped(month, tz_s):
    return month_bounds(month, tz_s)


def planted_wrong(month: str) -> int:
    return month_bounds(month, "7 hours")[0]
'''


def test_the_check_catches_an_unannotated_function_and_a_type_error(tmp_path, cache):
    tree = tmp_path / "tree"
    for pkg in ("gateway", "protocol"):  # gateway imports protocol: without it mypy would fail for that alone
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    shutil.copyfile(ROOT / "pyproject.toml", tree / "pyproject.toml")
    target = tree / "gateway" / "reports.py"
    source = target.read_text()
    assert "def month_bounds(" in source, "month_bounds moved: update PLANTED"
    target.write_text(source + PLANTED)
    lines = target.read_text().splitlines()
    untyped_line = lines.index("def planted_untyped(month, tz_s):") + 1
    wrong_line = lines.index('    return month_bounds(month, "7 hours")[0]') + 1

    code, out = _mypy(tree, cache)
    assert code != 0, "mypy passed a planted unannotated function and a type error:\n" + out
    untyped = re.search(r"gateway/reports\.py:%d: error: .*\[no-untyped-def\]" % untyped_line, out)
    wrong = re.search(r'gateway/reports\.py:%d: error: Argument 2 to "month_bounds" has incompatible type '
                      r'"str"; expected "int"\s+\[arg-type\]' % wrong_line, out)
    assert untyped, "the unannotated function was not reported:\n" + out
    assert wrong, "the type error was not reported:\n" + out
