"""What the gVisor backend stages into a sandbox: the harness, the environment's package, and the
packages the environment's module imports (followed module by module, read from the source)."""

from __future__ import annotations

import os

from sandbox.gvisor_backend import SYSTEM_DIRS, python_binds, stage_harness

VISIBLE = list(SYSTEM_DIRS) + python_binds()


def test_the_environment_modules_imports_are_staged_and_nothing_else(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "shapes").mkdir(parents=True)
    (project / "shapes" / "__init__.py").write_text("from .square import Square\n")
    (project / "shapes" / "square.py").write_text("import helpers\nSIDE = 1.0\n")
    (project / "helpers.py").write_text("def twice(x):\n    return 2 * x\n")
    (project / "unused.py").write_text("X = 1\n")  # importable, but nothing imports it
    (project / "my_env.py").write_text(
        "import numpy as np\n"  # installed in the venv: used in place
        "from environments.circle_packing import CirclePacking\n"
        "from shapes import Square\n"
        "try:\n    import not_installed_anywhere\nexcept ImportError:\n    pass\n"
        "class MyEnv(CirclePacking):\n    pass\n")
    monkeypatch.syspath_prepend(str(project))
    dest = tmp_path / "harness"
    staged = stage_harness(str(dest), ["elm", "sandbox", "my_env"], VISIBLE, follow=["my_env"])
    expected = {"my_env", "environments", "shapes", "helpers"}
    # elm and sandbox are staged when this checkout is not installed in the venv (an editable install)
    assert set(staged) - {"elm", "sandbox"} == expected, staged
    assert (dest / "environments" / "circle_packing.py").is_file()
    assert (dest / "shapes" / "square.py").is_file() and (dest / "helpers.py").is_file()
    assert not (dest / "unused.py").exists() and not (dest / "numpy").exists()
    assert os.stat(dest / "helpers.py").st_mode & 0o444 == 0o444  # readable by the candidate uid


def test_without_follow_only_the_named_packages_are_staged(tmp_path, monkeypatch):
    (tmp_path / "lone_env.py").write_text("from environments.circle_packing import CirclePacking\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    staged = stage_harness(str(tmp_path / "harness"), ["lone_env"], VISIBLE)
    assert staged == ["lone_env"]
