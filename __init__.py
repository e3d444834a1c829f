"""QGIS plugin entry point. Imports nothing third-party, so the plugin loads on a stock QGIS.

``classFactory`` makes the bundled ``mobclip_core`` importable (ahead of any other copy: the algorithms are written
against this one); the plugin then puts its own packages folder first on ``sys.path`` before anything imports from
it (see ``qgis_plugin/installer.py``). On a Python older than MobCLIP needs (the Windows and macOS installers of QGIS
3.22-3.28 bring 3.9) it returns a stand-in that only says so (``qgis_plugin/unsupported.py``). This file must run on
Python 3.9.
"""

import os
import sys


def classFactory(iface):  # noqa: N802 - QGIS API name
    here = os.path.dirname(os.path.abspath(__file__))
    if here in sys.path:
        sys.path.remove(here)
    sys.path.insert(0, here)
    from .qgis_plugin.unsupported import UnsupportedPythonPlugin, python_supported

    if not python_supported():
        return UnsupportedPythonPlugin(iface)
    from .qgis_plugin.plugin import MobClipPlugin

    return MobClipPlugin(iface)
