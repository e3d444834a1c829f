"""metadata.txt as QGIS and plugins.qgis.org read it: the required keys, a documented category, a PNG icon, a way to
reach the developers (the tracker; no made-up email address), and the zip's copy is the same file."""

from __future__ import annotations

import configparser
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# plugins.qgis.org's validator (qgis-app/plugins/validator.py, PLUGIN_REQUIRED_METADATA): keys that must exist
VALIDATOR_REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker")
VALIDATOR_REQUIRED += ("repository",)


def general() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    return parser["general"]


def test_metadata_has_what_qgis_and_the_plugin_repository_require():
    meta = general()
    assert [k for k in VALIDATOR_REQUIRED if k not in meta] == []
    assert meta["category"] in ("Raster", "Vector", "Database", "Mesh", "Web")  # the cookbook's list
    assert (ROOT / meta["icon"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert meta["hasProcessingProvider"] == "yes"
    assert "/" not in meta["author"]  # the validator refuses slashes in the author


def test_the_contact_is_reachable_not_made_up():
    meta = general()
    for key in ("tracker", "repository", "homepage"):
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+(/issues)?", meta[key]), (key, meta[key])
    assert meta["tracker"] == meta["repository"] + "/issues"
    assert "googlegroups" not in meta["email"]  # the old address did not exist
    assert meta["email"] == "" or re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", meta["email"])


def test_the_zip_carries_this_metadata(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_plugin
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    path = build_plugin.build(tmp_path / "mobclip.zip")
    with zipfile.ZipFile(path) as zf:
        assert zf.read("mobclip/metadata.txt") == (ROOT / "metadata.txt").read_bytes()
        assert "mobclip/" + general()["icon"] in zf.namelist() and "mobclip/LICENSE" in zf.namelist()
