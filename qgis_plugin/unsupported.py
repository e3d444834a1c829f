"""The plugin on a QGIS whose Python is too old for MobCLIP: one clear message instead of import errors.

QGIS embeds its own Python: 3.9 in the Windows and macOS installers of QGIS 3.22-3.28, 3.12 in the Windows
installers of QGIS 3.34 (2024 builds on) and 3.40, the system Python on Linux (Debian 12: 3.11). ``mobclip_core``
needs 3.11 (``tomllib``, and the wheels its installer pins start there), so on an older Python the plugin registers
no algorithms and says why, in the message bar and the log, and under ``qgis_process`` on standard error. This
module must import and run on Python 3.9: standard library and ``qgis`` only, no syntax newer than 3.9.
"""

import sys

MINIMUM_PYTHON = (3, 11)


def python_supported(version=None) -> bool:
    """Whether ``version`` (default: this Python's) can run MobCLIP."""
    return tuple((version or sys.version_info)[:2]) >= MINIMUM_PYTHON


def too_old_message(version=None) -> str:
    """What the user reads: the Python this QGIS has, the one MobCLIP needs, and which QGIS brings it."""
    have = ".".join(str(part) for part in (version or sys.version_info)[:3])
    need = ".".join(str(part) for part in MINIMUM_PYTHON)
    return (
        f"MobCLIP needs QGIS with Python {need} or newer; this QGIS runs Python {have}, so its algorithms are not "
        "available. On Windows, install QGIS 3.40 LTR or newer from qgis.org (it brings Python 3.12); on Linux, use "
        "a distribution whose Python is 3.11 or newer (Debian 12, Ubuntu 24.04). The QGIS Python console shows "
        "the version: import sys; print(sys.version)."
    )


def bar_message(version=None) -> str:
    """The message bar's one line (QGIS shows a second line only behind scroll arrows); the log has the rest."""
    have = ".".join(str(part) for part in (version or sys.version_info)[:2])
    need = ".".join(str(part) for part in MINIMUM_PYTHON)
    return f"needs Python {need}+, this QGIS has {have}: install QGIS 3.40 LTR or newer."


class UnsupportedPythonPlugin:
    """Stands in for the plugin: no provider, no menu; the message bar item and a log line say what to do."""

    def __init__(self, iface) -> None:
        self.iface = iface  # None under qgis_process
        self.bar_item = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API name
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(too_old_message(), "MobCLIP", Qgis.Critical)
        if self.iface is None:  # qgis_process prints only critical log messages, and not all of them
            print(f"MobCLIP: {too_old_message()}", file=sys.stderr)

    def initGui(self) -> None:  # noqa: N802 - QGIS API name
        from qgis.core import Qgis

        self.initProcessing()
        bar = self.iface.messageBar()
        self.bar_item = bar.pushWidget(bar.createMessage("MobCLIP", bar_message()), Qgis.Critical, 0)

    def unload(self) -> None:
        if self.bar_item is not None and self.iface is not None:
            try:
                self.iface.messageBar().popWidget(self.bar_item)
            except RuntimeError:  # the bar item was closed by the user (its C++ object is gone)
                pass
        self.bar_item = None
