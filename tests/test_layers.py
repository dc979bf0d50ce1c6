"""The package's shape: one import namespace, layers that only point down, a torch-free robot side.

Layers, bottom to top (a module may import its own layer and the ones below it, never above):
core (with the configs data) -> lara -> policy_export -> runtime -> robot -> teleop -> apps.
Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import
is still a dependency.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.installs import NOT_IN_BASE

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "configs", "lara", "policy_export", "runtime", "robot", "teleop", "apps")
RANK = {"core": 0, "configs": 0, "lara": 1, "policy_export": 2, "runtime": 3, "robot": 4, "teleop": 5, "apps": 6}

# The robot side: the entry points of lara-robot, lara-teleop, the policy client and the dashboards.
ROBOT_SIDE = ("lara_g1.robot.cli", "lara_g1.teleop.cli", "lara_g1.runtime.client", "lara_g1.robot.dashboard.app",
              "lara_g1.robot.control", "lara_g1.robot.g1", "lara_g1.robot.hands", "lara_g1.robot.head",
              "lara_g1.robot.cameras.realsense", "lara_g1.teleop.session", "lara_g1.teleop.sources.avp",
              "lara_g1.teleop.retarget.retargeter", "lara_g1.robot.evaluation")


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(layer: str, path: str, source: str) -> list[str]:
    """``"path:line imports lara_g1.X (layer -> X's layer)"`` for each import above ``layer``."""
    out = []
    for line, module in imported_modules(source):
        parts = module.split(".")
        if parts[0] != "lara_g1" or len(parts) < 2 or parts[1] not in RANK:
            continue
        if RANK[parts[1]] > RANK[layer]:
            out.append(f"{path}:{line} imports {module} ({layer} may not import {parts[1]})")
    return out


def package_modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path


def test_no_module_imports_a_layer_above_its_own():
    problems = []
    for layer, path in package_modules():
        problems += upward_imports(layer, str(path.relative_to(ROOT)), path.read_text())
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_an_upward_import_is_reported_with_file_line_and_import():
    source = "import numpy\n\ndef f():\n    from lara_g1.runtime.client import PolicyClient\n"
    assert upward_imports("lara", "lara/bundle.py", source) == [
        "lara/bundle.py:4 imports lara_g1.runtime.client (lara may not import runtime)"]
    assert upward_imports("robot", "robot/cli.py", source) == []        # downward: allowed


def test_code_imports_only_the_lara_g1_namespace():
    bare = []
    for _, path in package_modules():
        for line, module in imported_modules(path.read_text()):
            if module.split(".")[0] in LAYERS:
                bare.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bare, "imports of a folder's bare name (use lara_g1.<folder>):\n" + "\n".join(bare)


@pytest.mark.parametrize("cwd", ["repo", "elsewhere"])
def test_no_generic_top_level_import_names(cwd, tmp_path):
    where = ROOT if cwd == "repo" else tmp_path
    for name in ("robot", "runtime", "teleop", "configs", "policy_export", "lara", "core", "apps"):
        r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=where, capture_output=True, text=True)
        assert r.returncode != 0, f"`import {name}` worked from {where}"
        assert "ImportError" in r.stderr or "ModuleNotFoundError" in r.stderr
    r = subprocess.run([sys.executable, "-c", "import lara_g1.robot.cli, lara_g1.apps.loop"], cwd=where,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_folder_imported_by_its_bare_name_says_what_to_import():
    r = subprocess.run([sys.executable, "-c", "import robot"], cwd=ROOT, capture_output=True, text=True)
    assert "import lara_g1.robot, not robot" in r.stderr


def test_the_robot_side_imports_no_training_export_or_sim_stack():
    code = ("import importlib, sys\n"
            f"for m in {ROBOT_SIDE!r}: importlib.import_module(m)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {NOT_IN_BASE!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", f"the robot side imported {r.stdout.strip()}"


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject lists the packages explicitly (a package-dir mapping): a new subpackage must be
    listed, or a wheel install would lack it."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"lara_g1." + ".".join(p.parent.relative_to(ROOT).parts)
               for layer in LAYERS for p in (ROOT / layer).rglob("__init__.py")}
    assert listed == on_disk
