"""What the algorithms need and how the training child finds its Python: ``mobclip_core.dependencies``.

That module (plugin-shell's: the one table of packages, the plugin's two tiers, the managed packages folder) is
imported lazily by name. Until it is merged this falls back to the same names, defined minimally here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

try:
    from mobclip_core.dependencies import MAPS, TRAINING, child_environment, find_python, install_hint, missing_modules
except ImportError:  # TODO(lead): delete this branch once mobclip_core.dependencies (plugin-shell) is merged
    MAPS = ("h3", "pandas", "pyarrow", "lightgbm", "sklearn")
    TRAINING = (*MAPS, "numpy", "scipy", "numba", "shapely", "pyproj", "geopandas", "rasterio", "torch")

    def missing_modules(modules) -> list[str]:
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
        return (
            f"MobCLIP needs Python packages that are not installed: {', '.join(missing)}. Install them from QGIS "
            "with Plugins > MobCLIP > Install dependencies…, then run the algorithm again."
        )

    def find_python() -> Path:
        exe = Path(sys.executable)
        if exe.name.lower().startswith("python"):
            return exe
        for name in (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"):
            candidate = Path(sys.prefix) / "bin" / name
            if candidate.is_file():
                return candidate
        return Path(shutil.which("python3") or "python3")

    def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        library_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (library_parent, env.get("PYTHONPATH", "")) if p)
        return env


__all__ = ["MAPS", "TRAINING", "child_environment", "find_python", "install_hint", "missing_modules"]
