"""Start one real QGIS application per test session (headless) with the MobCLIP provider registered."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

_APP = None


def scratch_dir(prefix: str) -> str:
    """A temporary folder removed when this process exits (a QGIS profile, a plugin folder holding a link)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def start_qgis():
    global _APP
    if _APP is not None:
        return _APP
    try:
        from qgis.core import QgsApplication
    except ImportError as exc:
        if os.environ.get("MOBCLIP_REQUIRE_QGIS") == "1":
            raise RuntimeError("QGIS (python3-qgis) is required for this test run but does not import") from exc
        pytest.skip("QGIS is not installed (set MOBCLIP_REQUIRE_QGIS=1 to make this an error)")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if "QGIS_CUSTOM_CONFIG_PATH" not in os.environ:
        os.environ["QGIS_CUSTOM_CONFIG_PATH"] = scratch_dir("qgis-profile-")
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = scratch_dir("qgis-plugins-")
    os.symlink(repo, os.path.join(parent, "mobclip"))
    sys.path.insert(0, parent)
    import mobclip  # the repository as QGIS sees the plugin folder

    plugin = mobclip.classFactory(None)
    plugin.initProcessing()
    _APP = (app, plugin)
    return _APP


class LogFeedback:
    """A QgsProcessingFeedback that keeps the log lines and the warnings (created lazily: QGIS must be started
    first)."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Recording(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines: list[str] = []
                self.warnings: list[str] = []

            def pushInfo(self, info):  # noqa: N802
                self.lines.append(info)
                super().pushInfo(info)

            def pushWarning(self, warning):  # noqa: N802
                self.warnings.append(warning)
                super().pushWarning(warning)

        return Recording()
