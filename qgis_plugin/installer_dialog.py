"""The "Install dependencies" dialog: a thin Qt layer over :mod:`.installer` (which does the work, QGIS-free).

The install runs as a QgsTask (progress also in QGIS's task bar; Cancel stops pip within a second and leaves the
previous packages untouched).
"""

from __future__ import annotations

import traceback

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtCore import Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices, QFont
from qgis.PyQt.QtWidgets import (
    QApplication,
    QButtonGroup,
    QDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from mobclip_core import dependencies as deps
from mobclip_core.exceptions import DependencyInstallError

from . import installer


class InstallTask(QgsTask):
    """Runs :func:`installer.install` in QGIS's task manager; lines and status come back through signals."""

    line = pyqtSignal(str)
    status = pyqtSignal(str)

    def __init__(self, tiers: list[str], folder: installer.DepsFolder) -> None:
        super().__init__("Installing MobCLIP's Python packages", QgsTask.CanCancel)
        self.tiers = tiers
        self.folder = folder
        self.outcome: installer.InstallResult | None = None
        self.error: str | None = None
        self.was_cancelled = False

    def run(self) -> bool:
        def progress(pct: float, text: str) -> None:
            self.setProgress(pct)
            self.status.emit(text)

        try:
            self.outcome = installer.install(
                self.tiers, self.folder, on_line=self.line.emit, on_progress=progress, cancelled=self.isCanceled
            )
            return True
        except installer.Cancelled as exc:
            self.was_cancelled, self.error = True, str(exc)
        except DependencyInstallError as exc:
            self.error = str(exc)
        except Exception:  # noqa: BLE001 - a bug must reach the user's log, not vanish in a thread
            self.error = "Unexpected error:\n" + traceback.format_exc()
        return False


class InstallerDialog(QDialog):
    def __init__(self, folder: installer.DepsFolder, on_change=None, parent=None) -> None:
        super().__init__(parent)
        self.folder = folder
        self.on_change = on_change or (lambda: False)  # returns True when QGIS must restart to use the packages
        self.task: InstallTask | None = None
        self.setObjectName("mobclipInstallerDialog")
        self.setWindowTitle("MobCLIP – Python packages")
        self.setMinimumWidth(640)
        self.resize(760, 700)

        intro = self._intro()
        where = self._folder_row()
        tiers_box = self._tiers_box()
        self.tree = self._package_tree()
        self._progress_widgets()
        buttons = self._button_row()

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(where)
        layout.addWidget(tiers_box)
        layout.addWidget(self.tree, 2)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log_view, 1)
        layout.addLayout(buttons)
        self.refresh()

    # --- building ---------------------------------------------------------------------------------------------
    @staticmethod
    def _intro() -> QLabel:
        """What the dialog does to the system, so a user can agree to it before installing."""
        intro = QLabel(
            "MobCLIP installs the Python packages its algorithms need into a folder of its own, outside QGIS and "
            "outside the plugin folder (plugin updates keep it). QGIS's own packages are never changed and no "
            "administrator rights are needed. pip downloads the packages from PyPI, using your pip settings "
            "(proxy, index) if you have any."
        )
        intro.setWordWrap(True)
        return intro

    def _folder_row(self) -> QHBoxLayout:
        """The packages' folder (selectable) with a button that opens it."""
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        open_folder = QPushButton("Open folder")
        open_folder.clicked.connect(self.open_folder)
        where = QHBoxLayout()
        where.addWidget(self.folder_label, 1)
        where.addWidget(open_folder)
        return where

    def _tiers_box(self) -> QGroupBox:
        """One radio button per tier with its description and its state (filled by ``refresh``)."""
        tiers_box = QGroupBox("Install")
        grid = QGridLayout(tiers_box)
        self.tier_buttons = QButtonGroup(self)
        self.tier_state: dict[str, QLabel] = {}
        for row, (key, tier) in enumerate(deps.TIERS.items()):
            radio = QRadioButton(tier.title)
            radio.setObjectName(f"tier_{key}")
            radio.setProperty("tier", key)
            self.tier_buttons.addButton(radio, row)
            note = QLabel(tier.description)
            note.setWordWrap(True)
            state = QLabel()
            self.tier_state[key] = state
            grid.addWidget(radio, 2 * row, 0)
            grid.addWidget(state, 2 * row, 1, Qt.AlignRight)
            grid.addWidget(note, 2 * row + 1, 0, 1, 2)
        self.tier_buttons.button(0).setChecked(True)
        return tiers_box

    @staticmethod
    def _package_tree() -> QTreeWidget:
        """Every package of every tier with its version and where it comes from (filled by ``refresh``)."""
        tree = QTreeWidget()
        tree.setHeaderLabels(["Package", "Version", "Where"])
        tree.setRootIsDecorated(True)
        tree.setColumnWidth(0, 240)
        tree.setColumnWidth(1, 110)
        return tree

    def _progress_widgets(self) -> None:
        """The progress bar (shown during an install), the status line and pip's output."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()  # shown during an install
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setFont(QFont("monospace", 8))
        self.log_view.setPlaceholderText("pip's output appears here during an install.")

    def _button_row(self) -> QHBoxLayout:
        """The action buttons, wired to their handlers, with Close on the right."""
        self.install_button = QPushButton("Install")
        self.install_button.setObjectName("installButton")
        self.install_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.remove_button = QPushButton("Remove")
        self.check_button = QPushButton("Check again")
        self.copy_button = QPushButton("Copy diagnostics")
        close_button = QPushButton("Close")
        self.install_button.clicked.connect(self.start_install)
        self.cancel_button.clicked.connect(self.cancel_install)
        self.remove_button.clicked.connect(self.remove_packages)
        self.check_button.clicked.connect(self.check_again)
        self.copy_button.clicked.connect(self.copy_diagnostics)
        close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.install_button, self.cancel_button, self.remove_button, self.check_button, self.copy_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        return buttons

    # --- state --------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.task is not None

    def refresh(self) -> None:
        self.folder_label.setText(f"Folder: {self.folder.path}")
        self.tree.clear()
        installed = set(self.folder.installed_tiers())
        shown: set[str] = set()
        for key, tier in deps.TIERS.items():
            rows = installer.tier_status(key, self.folder)
            missing = [r.name for r in rows if r.version is None]
            own = [r for r in rows if r.module not in shown]  # "Training" lists only what it adds to the maps tier
            shown.update(r.module for r in rows)
            title = tier.title if len(own) == len(rows) else f"{tier.title} (adds to the above)"
            own_missing = sum(r.version is None for r in own)
            parent = QTreeWidgetItem([title, "", f"{own_missing} missing" if own_missing else "ready"])
            font = parent.font(0)
            font.setBold(True)
            parent.setFont(0, font)
            for r in own:
                QTreeWidgetItem(parent, [r.name, r.version or "–", r.where])
            self.tree.addTopLevelItem(parent)
            parent.setExpanded(True)
            if not missing:
                text = "✔ ready" + (" (installed here)" if key in installed else " (QGIS's Python has them)")
            else:
                text = f"not installed ({len(missing)} of {len(rows)} packages missing)"
            self.tier_state[key].setText(text)
        first_missing = next((i for i, k in enumerate(deps.TIERS) if "not installed" in self.tier_state[k].text()), 0)
        if not self.busy():
            self.tier_buttons.button(first_missing).setChecked(True)
        self.remove_button.setEnabled(not self.busy() and bool(self.folder.active_site()))
        self.install_button.setEnabled(not self.busy())
        self.cancel_button.setEnabled(self.busy())
        self.check_button.setEnabled(not self.busy())

    def selected_tier(self) -> str:
        return self.tier_buttons.checkedButton().property("tier")

    # --- actions ------------------------------------------------------------------------------------------
    def start_install(self) -> None:
        if self.busy():
            return
        self.log_view.clear()
        self.progress.setValue(0)
        self.progress.show()
        tier = self.selected_tier()
        self.status.setText(f"Installing “{deps.TIERS[tier].title}”…")
        self.task = InstallTask([tier], self.folder)
        self.task.line.connect(self.log_view.appendPlainText)
        self.task.status.connect(self.status.setText)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.taskCompleted.connect(self.install_finished)
        self.task.taskTerminated.connect(self.install_finished)
        QgsApplication.taskManager().addTask(self.task)
        self.refresh()

    def cancel_install(self) -> None:
        if self.task is not None:
            self.status.setText("Cancelling…")
            self.task.cancel()

    def install_finished(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if task.outcome is not None:
            self.progress.setValue(100)
            message = f"Installed: {', '.join(deps.TIERS[t].title for t in task.outcome.tiers)}."
            if self.on_change():
                message += " Restart QGIS to use the new packages."
            else:
                message += " The algorithms can use them now."
            self.status.setText(message)
        elif task.was_cancelled:
            self.progress.hide()
            self.status.setText("Cancelled: nothing was installed or changed.")
        else:
            self.progress.hide()
            self.status.setText(f"The install failed. {task.error}")
            if task.error:
                self.log_view.appendPlainText(task.error)
        self.refresh()

    def remove_packages(self) -> None:
        answer = QMessageBox.question(
            self,
            "Remove MobCLIP's packages",
            f"Delete every package MobCLIP installed ({self.folder.path})? QGIS's own packages are not touched.",
        )
        if answer != QMessageBox.Yes:
            return
        done = self.folder.remove()
        self.on_change()
        self.status.setText("Removed." if done else "Removed; some files are in use and go when QGIS restarts.")
        self.refresh()

    def check_again(self) -> None:
        self.on_change()
        self.refresh()
        self.status.setText("Checked.")

    def copy_diagnostics(self) -> None:
        QApplication.clipboard().setText(installer.diagnostics(self.folder, qgis_version=Qgis.QGIS_VERSION))
        self.status.setText("Diagnostics copied to the clipboard: paste them into your bug report.")

    def open_folder(self) -> None:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder.path)))

    def shutdown(self) -> None:
        """Plugin unload: stop a running install (its pip child ends within a second)."""
        if self.task is not None:
            self.task.cancel()
