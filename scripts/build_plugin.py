"""Build the QGIS plugin zip the official repository accepts: dist/mobclip-<version>.zip.

The zip holds one folder, ``mobclip/``, with metadata.txt, LICENSE, the plugin packages and the pure-Python
mobclip_core library (so the plugin works where mobclip-core is not pip-installed). Only files tracked by git go
in: no caches, no binaries, no tests or benchmarks. Run: python3 scripts/build_plugin.py
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "mobclip"
INCLUDE = ("__init__.py", "metadata.txt", "LICENSE", "icon.png", "README.md", "CHANGELOG.md")
PACKAGES = ("qgis_plugin/", "processing_algorithms/", "mobclip_core/")
REQUIRED = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository", "tracker")
MAY_BE_EMPTY = ("email",)  # plugins.qgis.org's validator wants the key; the tracker is the project's contact
CATEGORIES = ("Raster", "Vector", "Database", "Mesh", "Web")  # PyQGIS cookbook, plugin metadata table
FORBIDDEN_SUFFIXES = (".pyc", ".so", ".dll", ".dylib", ".exe", ".pt", ".pth", ".bin", ".zip")


def metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    missing = [k for k in REQUIRED if k not in meta or (not meta[k] and k not in MAY_BE_EMPTY)]
    if missing:
        sys.exit(f"metadata.txt lacks required keys: {missing}")
    if meta.get("hasProcessingProvider", "").lower() not in ("yes", "true"):
        sys.exit("metadata.txt must declare hasProcessingProvider=yes")
    if meta.get("category") and meta["category"] not in CATEGORIES:
        sys.exit(f"metadata.txt category must be one of {CATEGORIES}, not {meta['category']!r}")
    icon = ROOT / meta.get("icon", "")
    if not meta.get("icon") or not icon.is_file() or icon.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"metadata.txt icon must name a PNG file in the repository (got {meta.get('icon')!r})")
    return meta


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if f in INCLUDE or f.startswith(PACKAGES)]


def build(dest: Path | None = None) -> Path:
    meta = metadata()
    files = tracked_files()
    bad = [f for f in files if f.endswith(FORBIDDEN_SUFFIXES) or "__pycache__" in f]
    if bad:
        sys.exit(f"refusing to package binaries or caches: {bad}")
    dest = dest or ROOT / "dist" / f"{PLUGIN}-{meta['version']}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(files):
            zf.write(ROOT / f, f"{PLUGIN}/{f}")
    tmp.replace(dest)
    return dest


if __name__ == "__main__":
    path = build(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
