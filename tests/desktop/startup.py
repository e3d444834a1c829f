"""PYQGIS_STARTUP hook of the desktop tests: records every QGIS log message (tag, level, text) as JSON lines in
``$MOBCLIP_DESKTOP_LOG`` from before the plugins load, so a Python error at plugin load cannot go unseen."""

import builtins
import json
import os

if not getattr(builtins, "_mobclip_log_hook", False):  # QGIS may run the startup file twice
    builtins._mobclip_log_hook = True
    from qgis.core import QgsApplication

    _sink = open(os.environ["MOBCLIP_DESKTOP_LOG"], "a", encoding="utf-8")  # noqa: SIM115 - lives as long as QGIS

    def _record(message, tag, level):
        _sink.write(json.dumps({"tag": tag, "level": int(level), "msg": message}) + "\n")
        _sink.flush()

    QgsApplication.messageLog().messageReceived.connect(_record)
