"""Desktop checks of the plugin shell: start-up state, toolbox, dialogs, the installer dialog, training and Cancel."""

from __future__ import annotations

import re
import time
from pathlib import Path

from driver import Wait, check, text_fits

ALGORITHMS = (
    "tessellate",
    "attach_embeddings",
    "aggregate_embeddings",
    "fit_lightgbm",
    "embedding_raster",
    "train_embeddings",
    "write_training_config",
    "distil_encoder",
    "similar_places",
    "functional_zones",
    "embedding_space",
    "shared_pca_rgb",
    "embedding_change",
)


def _bar_items(iface) -> list[dict]:
    """The message bar's items; ``fits``: their text shows whole, not partly behind the bar's scroll arrows."""
    from qgis.PyQt.QtWidgets import QApplication, QPushButton

    QApplication.processEvents()
    out = []
    for item in iface.messageBar().items():
        buttons = [b.text() for b in item.findChildren(QPushButton) if b.text()]
        out.append(
            {
                "title": item.title(),
                "text": item.text(),
                "level": int(item.level()),
                "buttons": buttons,
                "fits": text_fits(item),
            }
        )
    return out


def _menu_actions(iface) -> list[str]:
    menu = iface.pluginMenu()
    out = []
    for action in menu.actions():
        if action.menu() is not None:
            out += [f"{action.text()} > {a.text()}" for a in action.menu().actions()]
    return out


def _visible_dialogs() -> list[dict]:
    from qgis.PyQt.QtWidgets import QApplication, QDialog

    return [
        {"class": type(w).__name__, "title": w.windowTitle(), "modal": w.isModal()}
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QDialog) and w.isVisible()
    ]


@check("startup")
def startup(ctx):
    """What a user sees right after QGIS started with the plugin enabled."""
    from qgis.utils import active_plugins, plugins

    yield Wait(1.0)
    ctx.result["loaded"] = "mobclip" in plugins and "mobclip" in active_plugins
    ctx.result["bar"] = _bar_items(ctx.iface)
    ctx.result["menu"] = _menu_actions(ctx.iface)
    ctx.result["dialogs"] = _visible_dialogs()
    ctx.result["python_errors"] = [m["msg"] for m in ctx.messages() if m["tag"] == "Python error"]
    ctx.result["mobclip_log"] = [m for m in ctx.messages() if m["tag"] == "MobCLIP"]
    ctx.shot(ctx.iface.mainWindow(), "main_window_at_start")


@check("old_python")
def old_python(ctx):
    """The plugin as QGIS starts it on a Python 3.9 (the Windows installers of QGIS 3.22-3.28): ``classFactory``
    and ``initGui`` with ``sys.version_info`` set to 3.9.18, as QGIS calls them at start-up; then ``unload``."""
    import sys

    import mobclip
    from qgis.core import QgsApplication

    real = sys.version_info
    providers = len(QgsApplication.processingRegistry().providers())
    sys.version_info = (3, 9, 18, "final", 0)
    try:
        stand_in = mobclip.classFactory(ctx.iface)
        stand_in.initGui()
    finally:
        sys.version_info = real
    ctx.result["plugin_class"] = type(stand_in).__name__
    ctx.result["providers_added"] = len(QgsApplication.processingRegistry().providers()) - providers
    yield Wait(0.5)
    ctx.result["bar"] = [item for item in _bar_items(ctx.iface) if "needs Python" in item["text"]]
    ctx.result["log"] = [m["msg"] for m in ctx.messages() if m["tag"] == "MobCLIP" and "Python 3.9" in m["msg"]]
    ctx.shot(ctx.iface.messageBar(), "old_python_bar")
    stand_in.unload()
    yield Wait(0.3)
    ctx.result["bar_after_unload"] = [item for item in _bar_items(ctx.iface) if "needs Python" in item["text"]]


@check("toolbox")
def toolbox(ctx):
    """The Processing toolbox lists every MobCLIP algorithm; canExecute() says what each needs."""
    from qgis.core import QgsApplication
    from qgis.utils import plugins

    provider = QgsApplication.processingRegistry().providerById("mobclip")
    ctx.result["algorithms"] = sorted(a.name() for a in provider.algorithms()) if provider else []
    ctx.result["can_execute"] = {}
    for alg in provider.algorithms() if provider else []:
        ok, message = alg.canExecute()
        ctx.result["can_execute"][alg.name()] = {"ok": bool(ok), "message": message}
    from qgis.PyQt.QtCore import QModelIndex, Qt

    box = plugins["processing"].toolbox
    box.show()
    box.raise_()
    ctx.iface.mainWindow().resizeDocks([box], [460], Qt.Horizontal)  # full algorithm names in the screenshot
    box.searchBox.setText("MobCLIP")
    yield Wait(1.0)
    tree = box.algorithmTree
    tree.expandAll()
    tree.setCurrentIndex(QModelIndex())
    tree.clearSelection()
    yield Wait(0.5)
    model, last = tree.model(), QModelIndex()  # the tree's last row: every group and algorithm is above it
    while model.rowCount(last):
        last = model.index(model.rowCount(last) - 1, 0, last)
    bottom = tree.visualRect(last).bottom()
    ctx.result["shot_shows_every_row"] = 0 <= bottom < tree.viewport().height()
    ctx.shot(box, "toolbox", height=tree.viewport().mapTo(box, tree.visualRect(last).bottomLeft()).y() + 8)


@check("blocked_algorithm")
def blocked_algorithm(ctx):
    """Double-clicking an algorithm whose packages are missing: QGIS's own 'cannot be run' dialog with the hint."""
    from qgis.PyQt.QtWidgets import QApplication, QDialog
    from qgis.utils import plugins

    box = plugins["processing"].toolbox
    tree = box.algorithmTree
    box.searchBox.setText("Tessellate")
    yield Wait(0.5)
    tree.expandAll()
    model = tree.model()
    target = None
    stack = [model.index(r, 0) for r in range(model.rowCount())]
    while stack:
        index = stack.pop()
        alg = tree.algorithmForIndex(index)
        if alg is not None and alg.id() == "mobclip:tessellate":
            target = index
            break
        stack += [model.index(r, 0, index) for r in range(model.rowCount(index))]
    assert target is not None, "mobclip:tessellate not found in the toolbox"
    tree.setCurrentIndex(target)
    seen = {}

    def inspect_and_close():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QDialog) and w.isVisible() and "cannot" in (w.windowTitle() + _text_of(w)).lower():
                seen["title"] = w.windowTitle()
                seen["text"] = _text_of(w)
                seen["shot"] = ctx.shot(w, "blocked_algorithm")
                w.close()
                return
        seen["text"] = None

    from qgis.PyQt.QtCore import QTimer

    QTimer.singleShot(1500, inspect_and_close)
    box.executeAlgorithm()  # modal while the dialog is open; the timer above reads and closes it
    yield Wait(until=lambda: "text" in seen, timeout=10)
    ctx.result.update(seen)
    box.searchBox.setText("")


def _text_of(widget) -> str:
    from qgis.PyQt.QtWidgets import QLabel, QTextBrowser, QTextEdit

    parts = [w.text() for w in widget.findChildren(QLabel)]
    parts += [w.toPlainText() for w in widget.findChildren((QTextBrowser, QTextEdit))]
    return "\n".join(p for p in parts if p)


@check("installer_dialog")
def installer_dialog(ctx):
    """The message bar's button (or, when there is no bar, the Plugins menu entry) opens the installer dialog."""
    from qgis.PyQt.QtWidgets import QApplication, QPushButton

    button = None
    for item in ctx.iface.messageBar().items():
        button = item.findChild(QPushButton, "mobclipInstallButton") or button
    if button is not None:
        ctx.result["opened_from"] = "message bar"
        button.click()
    else:
        ctx.result["opened_from"] = "menu"
        from qgis.PyQt.QtWidgets import QAction

        ctx.iface.mainWindow().findChild(QAction, "mobclipInstallDependencies").trigger()
    dialog = []
    yield Wait(
        until=lambda: (
            dialog.extend(
                w
                for w in QApplication.topLevelWidgets()
                if w.objectName() == "mobclipInstallerDialog" and w.isVisible()
            )
            or dialog
        ),
        timeout=10,
    )
    dlg = dialog[0]
    yield Wait(0.5)
    ctx.result["title"] = dlg.windowTitle()
    ctx.result["tiers"] = {key: label.text() for key, label in dlg.tier_state.items()}
    ctx.result["folder"] = dlg.folder_label.text()
    ctx.result["buttons"] = {
        b.text(): b.isEnabled() for b in dlg.findChildren(QPushButton) if b.text() and b.isVisible()
    }
    dlg.copy_diagnostics()
    ctx.result["diagnostics"] = QApplication.clipboard().text()
    ctx.shot(dlg, "installer_dialog")
    dlg.close()


@check("algorithm_dialogs")
def algorithm_dialogs(ctx):
    """Each algorithm's dialog opens (processing.createAlgorithmDialog) with Run enabled."""
    import processing

    opened = {}
    for name in ALGORITHMS:
        dlg = processing.createAlgorithmDialog(f"mobclip:{name}")
        dlg.show()
        yield Wait(0.3)
        opened[name] = {
            "title": dlg.windowTitle(),
            "run_enabled": dlg.runButton().isEnabled(),
            "can_execute": bool(dlg.algorithm().canExecute()[0]),
        }
        if name == "fit_lightgbm":
            ctx.shot(dlg, "algorithm_dialog_empty")
        if name == "distil_encoder":
            ctx.shot(dlg, "distil_dialog")
        dlg.close()
        dlg.deleteLater()
    ctx.result["dialogs"] = opened


def _project_layers() -> list[dict]:
    from qgis.core import QgsProject

    return [
        {"name": lyr.name(), "type": int(lyr.type()), "source": lyr.source(), "valid": lyr.isValid()}
        for lyr in QgsProject.instance().mapLayers().values()
    ]


def _run_dialog(ctx, parameters: dict, cancel_after: float | None = None):
    """Run mobclip:train_embeddings through its dialog as a user does; yields until it has finished. With
    ``cancel_after``, click Cancel that many seconds after the progress bar first moves (the work has started)."""
    import processing
    from qgis.PyQt.QtWidgets import QProgressBar

    dlg = processing.createAlgorithmDialog("mobclip:train_embeddings", parameters)
    dlg.show()
    bar = dlg.findChild(QProgressBar)  # the dialog's progress bar, what the user watches
    state = {"progress": [], "done": None, "started": time.time()}
    dlg.algorithmFinished.connect(lambda ok, results: state.update(done=(bool(ok), dict(results)), end=time.time()))
    bar.valueChanged.connect(lambda v: state["progress"].append((round(time.time() - state["started"], 1), v)))
    dlg.runAlgorithm()
    if cancel_after is not None:
        yield Wait(until=lambda: state["done"] is not None or any(v > 0 for _, v in state["progress"]), timeout=600)
        moved = state["started"] + next((t for t, v in state["progress"] if v > 0), 0.0)
        yield Wait(until=lambda: state["done"] is not None or time.time() > moved + cancel_after, timeout=600)
        state["progress_at_cancel"] = state["progress"][-1][1] if state["progress"] else None
        if state["done"] is None:
            state["cancel_at"] = time.time()
            dlg.cancelButton().click()
    yield Wait(
        until=lambda: state["done"] is not None or not dlg.cancelButton().isEnabled() and _stopped(dlg, state),
        timeout=900,
    )
    return dlg, state


def _stopped(dlg, state) -> bool:
    """A failed or cancelled run does not emit algorithmFinished in every QGIS version: the Run button is back."""
    if state["done"] is None and dlg.runButton().isEnabled() and time.time() - state["started"] > 2:
        state.setdefault("end", time.time())
        return True
    return False


@check("demo_data")
def demo_data(ctx):
    """Plugins > MobCLIP > Create demo data… (the folder dialog answered): the demo city and its config are
    written by a child process and its layers are added to the project."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QAction
    from qgis.utils import plugins

    ctx.result["menu_action"] = ctx.iface.mainWindow().findChild(QAction, "mobclipCreateDemoData") is not None
    task = plugins["mobclip"].create_demo_data(ctx.args["demo_folder"], rings=ctx.args.get("rings", 14))
    t0 = time.time()
    yield Wait(until=lambda: task not in plugins["mobclip"].tasks, timeout=600)
    ctx.result["seconds"] = round(time.time() - t0, 1)
    ctx.result["task_error"] = task.error
    ctx.result["config"] = str(task.config) if task.config.exists() else None
    ctx.result["layers"] = _project_layers()
    ctx.result["bar"] = _bar_items(ctx.iface)
    ctx.result["tasks_left"] = QgsApplication.taskManager().countActiveTasks()
    ctx.shared["demo_config"] = ctx.result["config"]
    overrides = ctx.args.get("config_overrides", {})  # a lighter training for CI: every stage, fewer steps
    if ctx.result["config"] and overrides:
        config = Path(ctx.result["config"])
        text = config.read_text(encoding="utf-8")
        for key, value in overrides.items():
            text, n = re.subn(rf"(?m)^{key} = \S+", f"{key} = {value}", text)
            assert n == 1, f"{key} not found once in the demo config"
        config.write_text(text, encoding="utf-8")


@check("train")
def train(ctx):
    """train_embeddings on the demo config (fresh cache) from its dialog: succeeds, adds its layers, map shown."""
    before = {lyr["source"] for lyr in _project_layers()}
    config = ctx.shared.get("demo_config") or ctx.args["demo_config"]
    ctx.result["config"] = config
    dlg, state = yield from _run_dialog(ctx, {"CONFIG": config})
    ctx.result["ok"], ctx.result["results"] = state["done"] if state["done"] else (False, {})
    ctx.result["seconds"] = round(state.get("end", time.time()) - state["started"], 1)
    ctx.result["progress"] = state["progress"]
    ctx.result["dialog_log"] = _dialog_log(dlg)
    ctx.result["layers"] = [lyr for lyr in _project_layers() if lyr["source"] not in before]
    ctx.shot(dlg, "train_dialog")
    dlg.close()
    from qgis.core import QgsProject

    root = QgsProject.instance().layerTreeRoot()
    for layer in QgsProject.instance().mapLayersByName("Demo imagery"):  # the trained map alone over the districts
        root.findLayer(layer.id()).setItemVisibilityChecked(False)
    canvas = ctx.iface.mapCanvas()
    canvas.zoomToFullExtent()
    canvas.refreshAllLayers()
    yield Wait(until=lambda: not canvas.isDrawing(), timeout=30)
    yield Wait(1.0)
    ctx.shot(ctx.iface.mainWindow(), "trained_map")


def _dialog_log(dlg) -> str:
    from qgis.PyQt.QtWidgets import QTextEdit

    texts = [w.toPlainText() for w in dlg.findChildren(QTextEdit) if w.objectName() == "txtLog"]
    return (texts[0] if texts else "")[-4000:]


@check("train_cancel")
def train_cancel(ctx):
    """A second training run (its own output and cache folders) cancelled from the dialog stops within seconds."""
    demo = Path(ctx.shared.get("demo_config") or ctx.args["demo_config"])
    config = demo.with_name("mobclip_cancel.toml")
    text = demo.read_text(encoding="utf-8")
    config.write_text(text.replace('"../output"', '"../output_cancel"').replace('"../cache"', '"../cache_cancel"'))
    ctx.result["config"] = str(config)
    dlg, state = yield from _run_dialog(ctx, {"CONFIG": str(config)}, cancel_after=ctx.args.get("cancel_after", 1.0))
    ctx.result["progress_at_cancel"] = state.get("progress_at_cancel")
    ctx.result["cancelled"] = "cancel_at" in state
    ctx.result["ok"] = bool(state["done"] and state["done"][0])
    ctx.result["stop_seconds"] = round(state.get("end", time.time()) - state.get("cancel_at", time.time()), 1)
    ctx.result["dialog_log"] = _dialog_log(dlg)
    ctx.result["layers"] = _project_layers()
    dlg.close()
    from qgis.core import QgsApplication

    manager = QgsApplication.taskManager()
    try:  # the cancelled run must also leave QGIS's task manager (else QGIS asks about it on exit)
        yield Wait(until=lambda: manager.countActiveTasks() == 0, timeout=30)
    except TimeoutError:
        pass
    ctx.result["active_tasks"] = [t.description() for t in manager.activeTasks()]


@check("install_from_dialog")
def install_from_dialog(ctx):
    """Install the "Maps and regression" tier with the dialog's Install button (a QgsTask running pip): the
    algorithms that need only that tier can run right after, without restarting QGIS."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QAction, QApplication

    ctx.iface.mainWindow().findChild(QAction, "mobclipInstallDependencies").trigger()
    yield Wait(0.5)
    dlg = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "mobclipInstallerDialog")
    next(b for b in dlg.tier_buttons.buttons() if b.property("tier") == "maps").setChecked(True)
    progress, statuses = [], []
    dlg.progress.valueChanged.connect(progress.append)
    t0 = time.time()
    dlg.install_button.click()
    task = dlg.task
    task.status.connect(statuses.append)
    ctx.result["cancel_enabled_while_running"] = dlg.cancel_button.isEnabled()
    yield Wait(until=lambda: dlg.task is None, timeout=900)
    ctx.result["seconds"] = round(time.time() - t0, 1)
    ctx.result["progress"] = sorted(set(progress))
    ctx.result["statuses"] = statuses[:50]
    ctx.result["status"] = dlg.status.text()
    ctx.result["log_tail"] = dlg.log_view.toPlainText()[-1500:]
    ctx.result["tiers"] = {key: label.text() for key, label in dlg.tier_state.items()}
    ctx.result["remove_enabled"] = dlg.remove_button.isEnabled()
    ctx.shot(dlg, "installer_dialog_installed")
    dlg.close()
    provider = QgsApplication.processingRegistry().providerById("mobclip")
    ctx.result["can_execute"] = {a.name(): bool(a.canExecute()[0]) for a in provider.algorithms()}
    ctx.result["bar"] = _bar_items(ctx.iface)


@check("dialog_with_layers")
def dialog_with_layers(ctx):
    """After training: the aggregation dialog filled in as a user would (Demo districts + the trained embeddings
    layer on the map), for the README."""
    import processing
    from qgis.core import QgsApplication, QgsProject

    project = QgsProject.instance()
    districts = project.mapLayersByName("Demo districts")[0]
    embeddings = next(lyr for lyr in project.mapLayers().values() if lyr.source().endswith("embeddings.gpkg"))
    alg = QgsApplication.processingRegistry().algorithmById("mobclip:aggregate_embeddings")
    names = {d.name() for d in alg.parameterDefinitions()}
    params = {"INPUT": districts.id()}  # the embedding layer is left to the dialog's preselection
    if "EMBEDDINGS_LAYER" not in names:
        params["EMBEDDINGS"] = embeddings.source().split("|")[0]
    dlg = processing.createAlgorithmDialog("mobclip:aggregate_embeddings", params)
    dlg.show()
    yield Wait(1.0)
    ctx.result["parameters"] = sorted(params)
    chosen = dlg.mainWidget().createProcessingParameters()
    ctx.result["embeddings_preselected"] = chosen.get("EMBEDDINGS_LAYER") == embeddings.id()
    ctx.result["run_enabled"] = dlg.runButton().isEnabled()
    ctx.shot(dlg, "algorithm_dialog")
    dlg.close()
