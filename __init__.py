"""QGIS plugin entry point. Imports nothing third-party, so the plugin loads on a stock QGIS.

``classFactory`` makes the bundled ``mobclip_core`` importable (ahead of any other copy: the algorithms are written
against this one); the plugin then puts its own packages folder first on ``sys.path`` before anything imports from
it (see ``qgis_plugin/installer.py``).
"""

import os
import sys


def classFactory(iface):  # noqa: N802 - QGIS API name
    here = os.path.dirname(os.path.abspath(__file__))
    if here in sys.path:
        sys.path.remove(here)
    sys.path.insert(0, here)
    from .qgis_plugin.plugin import MobClipPlugin

    return MobClipPlugin(iface)
