"""The one dependency table (mobclip_core/dependencies.py) against pyproject.toml, the library's install hints,
and the plugin on a stock QGIS Python that has none of the packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from mobclip_core import dependencies as deps

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_exactly_the_table():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    table: dict[str, list[str]] = {}
    for pkg in deps.PACKAGES.values():
        table.setdefault(pkg.group, []).append(pkg.requirement)
    for group, requirements in groups.items():
        own = [r for r in requirements if not r.startswith("mobclip-core[")]  # "all" = the other extras
        assert sorted(own) == sorted(table.get(group, [])), f"pyproject.toml [{group}] differs from the table"
    assert set(table) <= set(groups), "a table group is missing from pyproject.toml"


def library_imports() -> dict[str, set[str]]:
    """Top-level third-party modules mobclip_core imports (statements and import_optional calls): {module: files}."""
    import ast

    found: dict[str, set[str]] = {}
    for path in (ROOT / "mobclip_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "import_optional" and node.args:
                names = [node.args[0].value] if isinstance(node.args[0], ast.Constant) else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "mobclip_core":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_library_is_in_the_table():
    unknown = {m: sorted(files) for m, files in library_imports().items() if m not in deps.PACKAGES}
    assert unknown == {}, "add these to mobclip_core/dependencies.py (and pyproject.toml)"


def test_training_tier_has_everything_the_library_imports_but_the_scale_engines_and_baselines():
    outside = set(library_imports()) - set(deps.TIERS["training"].modules)
    optional = {"duckdb", "pyspark", "geoclip", "joblib"}  # joblib comes with sklearn
    assert set(deps.TIERS["training"].modules) - set(deps.TRAINING) == {"umap", "osmium"}  # installed, not required
    assert outside <= optional, outside


def test_tiers_name_table_packages_and_maps_loads_no_second_geo_stack():
    for tier in deps.TIERS.values():
        assert set(tier.modules) <= set(deps.PACKAGES)
        assert len(tier.modules) == len(set(tier.modules))
    assert set(deps.MAPS) <= set(deps.TRAINING)
    # these bring their own GDAL/GEOS/PROJ/LLVM or torch: never inside the QGIS process
    assert not set(deps.MAPS) & {"shapely", "geopandas", "pyproj", "rasterio", "numba", "torch", "matplotlib"}
    assert deps.TIERS["maps"].requirements == [deps.PACKAGES[m].requirement for m in deps.MAPS]


def test_missing_modules_imports_nothing():
    code = textwrap.dedent(
        """
        import sys
        from mobclip_core import dependencies as d
        before = set(sys.modules)
        missing = d.missing_modules([*d.TRAINING, "no_such_module_xyz"])
        print(missing[-1], sorted(m for m in set(sys.modules) - before if m.split('.')[0] in d.PACKAGES))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["no_such_module_xyz", "[]"], out.stderr


def test_install_hint_points_at_the_plugin_not_a_terminal():
    hint = deps.install_hint(["h3", "sklearn"])
    assert "h3, scikit-learn" in hint
    assert "Plugins > MobCLIP > Install dependencies" in hint and "“Maps and regression”" in hint
    assert "pip" not in hint and "terminal" in hint  # "no terminal ... needed"
    assert "“Training”" in deps.install_hint(["h3", "torch"])
    assert deps.install_hint([]) == ""


def test_import_optional_hint_comes_from_the_table(monkeypatch):
    import importlib

    from mobclip_core._optional import import_optional
    from mobclip_core.exceptions import MissingDependencyError

    real = importlib.import_module

    def fake(name, *args):
        if name.split(".")[0] in ("torch", "geoclip", "h3"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingDependencyError, match=r"\"torch\".*pip install 'mobclip-core\[ml\]'.*Install dep"):
        import_optional("torch")
    with pytest.raises(MissingDependencyError, match=r"mobclip-core\[ml\]'\)?$"):  # no plugin tier has geoclip
        import_optional("geoclip.model")
    with pytest.raises(MissingDependencyError, match=r"pip install 'h3>=4.1,<5'"):  # a core dependency
        import_optional("h3")


# --- the plugin on a stock QGIS Python (Debian's python3.11, no pandas/h3/...) --------------------------------
IMPORT_AS_QGIS_DOES = """
import json, os, sys
sys.path.insert(0, {plugins!r})
import mobclip                       # the plugin package, as QGIS imports it from python/plugins
sys.path.insert(0, os.path.dirname(mobclip.__file__))  # what classFactory does
before = set(sys.modules)
errors = {{}}
for name in {modules!r}:
    try:
        __import__(name)
    except Exception as exc:
        errors[name] = f"{{type(exc).__name__}}: {{exc}}"
third_party = sorted({{m.split(".")[0] for m in set(sys.modules) - before}} & set({table!r}))
print(json.dumps({{"errors": errors, "third_party": third_party}}))
"""


def import_under_stock_python(tmp_path, modules) -> dict:
    import json

    from desktop_harness import stock_python_or_skip

    python = stock_python_or_skip()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mobclip").symlink_to(ROOT)
    code = IMPORT_AS_QGIS_DOES.format(
        plugins=str(plugins), modules=list(modules), table=sorted(set(deps.PACKAGES) - {"numpy"})
    )  # QGIS ships numpy
    out = subprocess.run(
        [python, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stock_python_imports_the_plugin_shell_without_third_party_packages(tmp_path):
    found = import_under_stock_python(
        tmp_path,
        [
            "mobclip_core",
            "mobclip_core.dependencies",
            "mobclip_core._optional",
            "mobclip.qgis_plugin.installer",
            "mobclip.qgis_plugin.plugin",
            "mobclip.qgis_plugin.provider",
            "mobclip.qgis_plugin.installer_dialog",
            "mobclip.qgis_plugin.similarity_tool",
        ],
    )
    assert found == {"errors": {}, "third_party": []}


def test_stock_python_imports_every_algorithm_module(tmp_path):
    modules = ["mobclip.processing_algorithms"] + [
        f"mobclip.processing_algorithms.{p.stem}"
        for p in sorted((ROOT / "processing_algorithms").glob("*.py"))
        if p.stem != "__init__"
    ]
    found = import_under_stock_python(tmp_path, modules)
    assert found["errors"] == {}, "an algorithm module imports a third-party package at module level"
    assert found["third_party"] == []


# --- a QGIS whose Python is older than 3.11 (Windows and macOS installers of QGIS 3.22-3.28 bring 3.9) ----------
OLD_PYTHON_PATH = ["__init__.py", "qgis_plugin/__init__.py", "qgis_plugin/unsupported.py"]


def test_what_runs_on_python_3_9_is_python_3_9_code_with_no_third_party_import():
    import ast

    for name in OLD_PYTHON_PATH:
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name in {"os", "sys"} for a in node.names), (name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom):
                allowed = node.level == 1 and node.module in {"qgis_plugin.unsupported", "qgis_plugin.plugin"}
                assert allowed or node.module == "qgis.core", (name, ast.dump(node))


def test_on_python_3_9_qgis_process_gets_a_message_and_no_algorithms(tmp_path):
    """QGIS's start-up on a 3.9 Python, as qgis_process runs it (``classFactory(None)``, ``initProcessing``), in
    Debian's python3.11 with ``sys.version_info`` set to 3.9.18 first: the stand-in says which Python is needed and
    which QGIS brings it, registers no provider, and nothing 3.11-only (the plugin shell, mobclip_core) is imported."""
    from desktop_harness import stock_python_or_skip

    python = stock_python_or_skip()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mobclip").symlink_to(ROOT)
    code = f"""
import sys
sys.version_info = (3, 9, 18, "final", 0)
sys.path.insert(0, {str(plugins)!r})
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
before = len(QgsApplication.processingRegistry().providers())
import mobclip
plugin = mobclip.classFactory(None)
plugin.initProcessing()
print("CLASS", type(plugin).__name__)
print("PROVIDERS", len(QgsApplication.processingRegistry().providers()) - before)
print("IMPORTED", sorted(m for m in sys.modules if m.startswith(("mobclip_core", "mobclip.qgis_plugin.plugin"))))
app.exitQgis()
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line[:1].isupper() and " " in line)
    assert lines["CLASS"] == "UnsupportedPythonPlugin"
    assert lines["PROVIDERS"] == "0" and lines["IMPORTED"] == "[]"
    assert "MobCLIP: MobCLIP needs QGIS with Python 3.11 or newer; this QGIS runs Python 3.9.18" in out.stderr
    assert "install QGIS 3.40 LTR or newer" in out.stderr
