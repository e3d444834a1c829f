"""The plugin class QGIS instantiates through ``classFactory``: packages folder, provider, menu, message bar."""

from __future__ import annotations

import os
import sys

from qgis.core import Qgis, QgsApplication, QgsMessageLog

from mobclip_core import dependencies as deps

from . import installer

MENU = "&MobCLIP"


def deps_folder() -> installer.DepsFolder:
    """This QGIS's packages folder: ``$MOBCLIP_DEPS_DIR`` or ``<profile>/python/mobclip-deps``."""
    return installer.DepsFolder(installer.default_root(QgsApplication.qgisSettingsDirPath()))


def missing_by_tier() -> dict[str, list[str]]:
    """Import names each tier still lacks, as QGIS sees them now."""
    return {key: deps.missing_modules(tier.modules) for key, tier in deps.TIERS.items()}


def log(message: str, level=Qgis.Info) -> None:
    QgsMessageLog.logMessage(message, "MobCLIP", level)


class MobClipPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface  # None under qgis_process
        self.provider = None
        self.actions: list = []
        self.bar_item = None
        self.dialog = None
        self.folder = None
        self.restart_needed = False
        self.tasks: list = []
        self.similar_action = None
        self.similarity_tools: dict[str, object] = {}  # embedding layer id -> its SimilarityMapTool
        self.previous_tool = None  # the map tool to give back when Find similar places is switched off
        try:  # before anything imports from it; a broken folder must never stop QGIS from loading the plugin
            self.folder = deps_folder()
            self.restart_needed = self.folder.activate().restart_needed
        except Exception as exc:  # noqa: BLE001
            log(f"MobCLIP's packages folder could not be used: {exc}", Qgis.Warning)

    # --- QGIS hooks ---------------------------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802 - QGIS API name
        from .provider import MobClipProvider

        self.provider = MobClipProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)
        if self.iface is None:  # qgis_process: no message bar, and it prints only critical log messages
            missing = missing_by_tier()["maps"]
            if missing:
                command = installer.headless_command("maps", QgsApplication.qgisSettingsDirPath())
                hint = f"{deps.install_hint(missing)} Without the QGIS window: {command}"
                log(hint, Qgis.Warning)
                print(f"MobCLIP: {hint}", file=sys.stderr)

    def initGui(self) -> None:  # noqa: N802
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .provider import ICON

        self.initProcessing()
        action = QAction(QIcon(ICON), "Install dependencies…", self.iface.mainWindow())
        action.setObjectName("mobclipInstallDependencies")
        action.setToolTip("Install, check or remove the Python packages MobCLIP's algorithms need")
        action.triggered.connect(self.show_installer)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)
        demo = QAction("Create demo data…", self.iface.mainWindow())
        demo.setObjectName("mobclipCreateDemoData")
        demo.setToolTip("Write the synthetic demo city and its training config into a folder, and show its layers")
        demo.triggered.connect(self.ask_demo_folder)
        self.iface.addPluginToMenu(MENU, demo)
        self.actions.append(demo)
        similar = QAction(QIcon(ICON), "Find similar places", self.iface.mainWindow())
        similar.setObjectName("mobclipFindSimilarPlaces")
        similar.setCheckable(True)
        similar.setToolTip(
            "Find similar places: click a cell or area of the active embedding layer; a layer shows how similar "
            "every other place is (cosine similarity of the embeddings, 1 = the same)"
        )
        similar.triggered.connect(self.find_similar_places)
        self.iface.addPluginToMenu(MENU, similar)
        self.iface.addToolBarIcon(similar)
        self.actions.append(similar)
        self.similar_action = similar
        from qgis.core import QgsProject

        QgsProject.instance().layersWillBeRemoved.connect(self.layers_removed)
        self.show_dependency_message()

    def unload(self) -> None:
        if self.similar_action is not None:
            from qgis.core import QgsProject

            try:
                QgsProject.instance().layersWillBeRemoved.disconnect(self.layers_removed)
            except TypeError:  # never connected
                pass
            self.stop_similarity_tool()
            self.similarity_tools = {}
            self.iface.removeToolBarIcon(self.similar_action)
            self.similar_action = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        self.clear_message()
        if self.dialog is not None:
            self.dialog.shutdown()
            self.dialog.deleteLater()
            self.dialog = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # --- dependency state ---------------------------------------------------------------------------------
    def dependency_message(self) -> tuple[str, int]:
        """(text for the user, Qgis message level); empty text when every tier is installed."""
        if self.restart_needed:
            return "new Python packages were installed: restart QGIS to use them.", Qgis.Info
        stale = self.folder.stale_reason(_qgis_numpy()) if self.folder is not None else None
        if stale:
            return stale, Qgis.Warning
        missing = missing_by_tier()
        # one line of the message bar at 1280 pixels: QGIS shows a second line only behind its scroll arrows
        if missing["maps"]:
            return f"missing Python packages: {_names(missing['maps'])}.", Qgis.Warning
        if missing["training"]:
            return f"training needs {len(missing['training'])} more packages ({_names(missing['training'], 3)}).", (
                Qgis.Info
            )
        return "", Qgis.Info

    def show_dependency_message(self) -> None:
        from qgis.PyQt.QtWidgets import QPushButton

        self.clear_message()
        text, level = self.dependency_message()
        if not text or self.iface is None:
            return
        bar = self.iface.messageBar()
        widget = bar.createMessage("MobCLIP", text)
        button = QPushButton("Install dependencies…", widget)
        button.setObjectName("mobclipInstallButton")
        button.clicked.connect(self.show_installer)
        widget.layout().addWidget(button)
        self.bar_item = bar.pushWidget(widget, level, 0 if level == Qgis.Warning else 15)

    def clear_message(self) -> None:
        if self.bar_item is not None and self.iface is not None:
            try:
                self.iface.messageBar().popWidget(self.bar_item)
            except RuntimeError:  # already closed by the user (the C++ object is gone)
                pass
        self.bar_item = None

    def show_installer(self) -> None:
        if self.folder is None:
            self.folder = deps_folder()
        if self.dialog is None:
            from .installer_dialog import InstallerDialog

            self.dialog = InstallerDialog(self.folder, on_change=self.packages_changed, parent=self.iface.mainWindow())
        self.dialog.refresh()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    # --- Find similar places (the map tool) ----------------------------------------------------------------
    def find_similar_places(self, checked: bool) -> None:
        """The toolbar/menu action: on, the click-to-compare tool works on the active layer; off, the previous
        map tool comes back. A layer without embeddings gets a message-bar warning naming the layer needed."""
        if not checked:
            self.stop_similarity_tool()
            return
        from .similarity_tool import layer_problem

        layer = self.iface.activeLayer()
        for tool in self.similarity_tools.values():  # its similarity layer is active (QGIS selects new layers)
            if layer is not None and layer.id() == tool.result_id:
                layer = tool.layer
        missing = deps.missing_modules(deps.MAPS)
        problem = deps.install_hint(missing) if missing else layer_problem(layer)
        if problem:
            self.similar_action.setChecked(False)
            # the first sentence in the bar (one line: QGIS hides the rest behind scroll arrows), all of it behind
            # the bar's "Show more"
            headline = problem.split(". ", 1)[0].rstrip(".") + "."
            self.iface.messageBar().pushMessage("MobCLIP: Find similar places", headline, problem, Qgis.Warning)
            return
        try:
            tool = self.similarity_tool_for(layer)
        except Exception as exc:  # noqa: BLE001 - a MobClipError names the fix; anything else is reported too
            self.similar_action.setChecked(False)
            self.iface.messageBar().pushWarning("MobCLIP: Find similar places", f"{layer.name()}: {exc}")
            log(f"Find similar places on {layer.name()!r} failed: {exc!r}", Qgis.Warning)
            return
        canvas = self.iface.mapCanvas()
        current = canvas.mapTool()
        if current is not None and current not in self.similarity_tools.values():
            self.previous_tool = current
        canvas.setMapTool(tool)
        self.iface.messageBar().pushInfo(  # one short line: a second one hides behind the bar's scroll arrows
            "MobCLIP", f"Click a place of \u201c{layer.name()}\u201d to map how alike every place is to it."
        )

    def similarity_tool_for(self, layer):
        """The tool of ``layer``, made once (it reads the embeddings once) while its result layer is in the project."""
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtWidgets import QApplication

        from .similarity_tool import SimilarityMapTool

        tool = self.similarity_tools.get(layer.id())
        if tool is not None and tool.result_in_project():
            return tool
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            tool = SimilarityMapTool(self.iface.mapCanvas(), layer)
        finally:
            QApplication.restoreOverrideCursor()
        tool.setAction(self.similar_action)  # QGIS unchecks the action when the user picks another map tool
        self.similarity_tools[layer.id()] = tool
        return tool

    def stop_similarity_tool(self) -> None:
        """Give the canvas back the map tool it had before, if one of ours is active."""
        from qgis.PyQt import sip

        canvas = self.iface.mapCanvas()
        current = canvas.mapTool()
        if current is None or current not in self.similarity_tools.values():
            return
        previous, self.previous_tool = self.previous_tool, None
        if previous is not None and not sip.isdeleted(previous):
            canvas.setMapTool(previous)
        else:
            canvas.unsetMapTool(current)

    def layers_removed(self, ids) -> None:
        """An embedding layer leaves the project: its tool goes too (the canvas gets its previous tool back)."""
        for layer_id in [i for i in ids if i in self.similarity_tools]:
            if self.iface.mapCanvas().mapTool() is self.similarity_tools[layer_id]:
                self.stop_similarity_tool()
            del self.similarity_tools[layer_id]  # its similarity layer stays, with the last click's values

    # --- demo data ------------------------------------------------------------------------------------------
    def ask_demo_folder(self) -> None:
        from qgis.PyQt.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self.iface.mainWindow(), "Folder for the MobCLIP demo city")
        if folder:
            self.create_demo_data(os.path.join(folder, "mobclip-demo", "data"))

    def create_demo_data(self, folder: str, rings: int = 14):
        """Write the demo city into ``folder`` in a background task; its layers are added when it is done."""
        missing = deps.missing_modules(deps.TRAINING)
        if missing:
            self.iface.messageBar().pushWarning(
                "MobCLIP", f"The demo city needs the \u201cTraining\u201d packages. {deps.install_hint(missing)}"
            )
            self.show_installer()
            return None
        from .demo_data import DemoDataTask

        task = DemoDataTask(folder, rings)
        task.taskCompleted.connect(lambda: self.demo_done(task))
        task.taskTerminated.connect(lambda: self.demo_done(task))
        self.tasks.append(task)  # QgsTask objects must outlive this method
        QgsApplication.taskManager().addTask(task)
        return task

    def demo_done(self, task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if task.error is None and task.config.exists():
            task.add_layers()
            self.iface.messageBar().pushSuccess(
                "MobCLIP",
                f"Demo city written to {task.folder}. Next: Processing Toolbox > MobCLIP > Training > Train "
                f"embeddings from a config file, with {task.config}.",
            )
        else:
            self.iface.messageBar().pushWarning("MobCLIP", f"The demo city could not be created: {task.error}")
            log(f"make-demo-data failed: {task.error}\n{task.output[-4000:]}", Qgis.Warning)

    def packages_changed(self) -> bool:
        """After an install or removal: use the new folder now when possible, refresh the algorithms and the bar.
        True when QGIS must restart to use the new packages."""
        self.restart_needed = self.folder.activate().restart_needed
        if self.provider is not None:
            self.provider.refreshAlgorithms()
        self.show_dependency_message()
        return self.restart_needed


def _names(modules: list[str], most: int | None = None) -> str:
    """The packages' names, the first ``most`` of them and "..." when there are more."""
    names = [deps.PACKAGES[m].name for m in modules]
    return ", ".join(names[:most]) + (", ..." if most is not None and len(names) > most else "")


def _qgis_numpy() -> str | None:
    """The numpy version QGIS itself runs (already imported by QGIS's Processing, or found without importing)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        return getattr(numpy, "__version__", None)
    from importlib import metadata

    paths = [p for p in sys.path if p not in deps.added_sites()]
    found = next(iter(metadata.distributions(name="numpy", path=paths)), None)
    return found.version if found else None
