"""The QGIS plugin shell: plugin class, Processing provider, dependency installer. Nothing third-party is imported
anywhere in it; ``installer`` is QGIS-free and the dialog is a thin Qt layer over it."""
