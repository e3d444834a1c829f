"""A QGIS session as a user has it, in its own process: run MobCLIP algorithms, then report what QGIS loaded.

Usage: python qgis_session.py JOBS.json REPORT.json
JOBS.json: [{"id": "mobclip:...", "parameters": {...}, "load": false}, ...]; "load": true runs the algorithm with
processing.runAndLoadResults (as the Processing dialog does) into the project.
The report lists each job's results or error message, the native GDAL/GEOS/PROJ/LLVM libraries mapped into the
process (/proc/self/maps), the Python modules loaded, and the project's layers with their renderers. The process
then closes QGIS and exits 0: a crash at exit shows as a non-zero exit status.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

NATIVE = re.compile(r"lib(gdal|geos|geos_c|proj|LLVM|llvm|triton|clang)[-._]")


def scratch_dir(prefix: str) -> str:
    """A temporary folder removed when this process exits (a QGIS profile, a plugin folder holding a link)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def mapped_libraries() -> list[str]:
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and NATIVE.search(os.path.basename(parts[5])):
                paths.add(parts[5])
    return sorted(paths)


def recording_feedback_class():
    from qgis.core import QgsProcessingFeedback

    class RecordingFeedback(QgsProcessingFeedback):
        """Keeps the progress values and log lines an algorithm reports."""

        def __init__(self):
            super().__init__()
            self.progress: list[float] = []
            self.info: list[str] = []
            self.texts: list[str] = []  # progress texts: QGIS's dialog writes each into its log
            self.progressChanged.connect(lambda p: self.progress.append(round(p, 1)))

        def setProgressText(self, text):  # noqa: N802
            self.texts.append(text)
            super().setProgressText(text)

        def pushInfo(self, info):  # noqa: N802
            self.info.append(info)
            super().pushInfo(info)

    return RecordingFeedback


def main(jobs_path: str, report_path: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if "QGIS_CUSTOM_CONFIG_PATH" not in os.environ:
        os.environ["QGIS_CUSTOM_CONFIG_PATH"] = scratch_dir("qgis-profile-")
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    RecordingFeedback = recording_feedback_class()  # noqa: N806
    plugins = Path(scratch_dir("qgis-plugins-"))
    (plugins / "mobclip").symlink_to(Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(plugins))
    import mobclip

    plugin = mobclip.classFactory(None)
    plugin.initProcessing()
    before = mapped_libraries()
    report: dict = {"jobs": [], "libraries_at_start": before}
    for job in json.loads(Path(jobs_path).read_text()):
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = RecordingFeedback()
        run = processing.runAndLoadResults if job.get("load") else processing.run
        entry = {"id": job["id"]}
        try:
            results = run(job["id"], job["parameters"], feedback=feedback, context=context)
            entry["results"] = {k: str(v) for k, v in (results or {}).items()}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            entry["error"] = f"{type(exc).__name__}: {exc}"
        report["jobs"].append({**entry, "progress": feedback.progress, "info": feedback.info, "texts": feedback.texts})
    report["libraries"] = mapped_libraries()
    report["modules"] = sorted(m for m in sys.modules if "." not in m)
    layers = []
    for layer in QgsProject.instance().mapLayers().values():
        renderer = layer.renderer()
        entry = {"name": layer.name(), "source": layer.source(), "renderer": type(renderer).__name__}
        if hasattr(renderer, "symbol") and renderer.symbol() is not None:
            entry["fill_alpha"] = renderer.symbol().color().alpha()
        if hasattr(renderer, "redBand"):
            entry["bands"] = [renderer.redBand(), renderer.greenBand(), renderer.blueBand()]
        layers.append(entry)
    report["layers"] = layers
    Path(report_path).write_text(json.dumps(report, indent=1))
    QgsProject.instance().removeAllMapLayers()
    plugin.unload()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
