"""The QGIS plugin: plugin class, Processing provider, dependency checks. Nothing heavy is imported here."""
