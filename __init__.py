"""QGIS plugin entry point. Imports nothing heavy: the provider checks dependencies lazily."""

import os
import sys


def classFactory(iface):  # noqa: N802 - QGIS API name
    # The plugin zip bundles mobclip_core beside this file; a pip-installed mobclip_core takes precedence.
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.append(here)
    from .qgis_plugin.plugin import MobClipPlugin

    return MobClipPlugin(iface)
