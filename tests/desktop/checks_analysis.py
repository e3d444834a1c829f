"""Desktop checks of the analysis tools: the "Find similar places" map tool, clicked as a user clicks it."""

from __future__ import annotations

from driver import Wait, check, text_fits


def _bar_texts(iface) -> list[str]:
    return [f"{item.title()}: {item.text()}" for item in iface.messageBar().items()]


def _bar_details(iface) -> list[dict]:
    """Each message: whether its text shows whole in the bar, and the text behind its "Show more" (QGIS keeps it in
    a hidden message viewer titled like the message)."""
    from qgis.PyQt.QtWidgets import QApplication, QDialog, QTextEdit, QToolButton

    QApplication.processEvents()
    out = []
    for item in iface.messageBar().items():
        more_button = any(b.text() == "Show more" for b in item.findChildren(QToolButton))
        viewers = [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and not w.isVisible()]
        more = [t.toPlainText() for v in viewers if v.windowTitle() == item.title() for t in v.findChildren(QTextEdit)]
        out.append(
            {
                "title": item.title(),
                "fits": text_fits(item),
                "more": (more[-1] if more else "") if more_button else "",
            }
        )
    return out


def _tool_name(canvas) -> str | None:
    tool = canvas.mapTool()
    return type(tool).__name__ if tool is not None else None


@check("similarity_tool")
def similarity_tool(ctx):
    """Plugins > MobCLIP > Find similar places: refused (with a message-bar warning) on a layer without embeddings;
    on the embeddings layer a real mouse click on a cell makes the similarity raster, the clicked cell at 1; the
    action then gives the previous map tool back; unloading the plugin removes the action."""
    from qgis.core import QgsCoordinateTransform, QgsFeatureRequest, QgsProject, QgsRaster, QgsVectorLayer
    from qgis.PyQt.QtCore import QPoint, Qt
    from qgis.PyQt.QtTest import QTest
    from qgis.PyQt.QtWidgets import QAction, QToolBar
    from qgis.utils import plugins

    iface, project = ctx.iface, QgsProject.instance()
    canvas = iface.mapCanvas()
    window = iface.mainWindow()
    action = window.findChild(QAction, "mobclipFindSimilarPlaces")
    assert action is not None, "no Find similar places action"
    ctx.result["menu"] = [a.text() for m in iface.pluginMenu().actions() if m.menu() for a in m.menu().actions()]
    ctx.result["in_toolbar"] = any(action in bar.actions() for bar in window.findChildren(QToolBar))
    ctx.result["checkable"] = action.isCheckable()

    # 1. a layer without embeddings is active: a warning naming the layer needed, the tool stays off
    plain = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "Just points", "memory")
    project.addMapLayer(plain)
    iface.setActiveLayer(plain)
    iface.actionPan().trigger()
    pan = canvas.mapTool()
    iface.messageBar().clearWidgets()
    action.trigger()
    yield Wait(0.3)
    ctx.result["refused"] = {
        "checked": action.isChecked(),
        "tool": _tool_name(canvas),
        "bar": _bar_texts(iface),
        "details": _bar_details(iface),
    }

    # 2. the embeddings layer: on, a click on a cell, the similarity raster
    layer = QgsVectorLayer(f"{ctx.args['embeddings']}|layername=embeddings", ctx.args["layer_name"], "ogr")
    assert layer.isValid(), ctx.args["embeddings"]
    project.addMapLayer(layer)
    project.removeMapLayer(plain.id())
    iface.setActiveLayer(layer)
    canvas.setExtent(canvas.mapSettings().layerToMapCoordinates(layer, layer.extent()))
    canvas.refresh()
    yield Wait(until=lambda: not canvas.isDrawing(), timeout=30)
    iface.messageBar().clearWidgets()
    size = window.size()
    window.showNormal()
    window.resize(1280, size.height())  # a laptop's width: the bar's one line is shorter than on the test screen
    yield Wait(0.3)
    action.trigger()
    yield Wait(0.5)
    tool = canvas.mapTool()
    ctx.result["on"] = {
        "checked": action.isChecked(),
        "tool": _tool_name(canvas),
        "bar": _bar_texts(iface),
        "details": _bar_details(iface),
        "width": window.width(),
    }
    window.resize(size)
    assert _tool_name(canvas) == "SimilarityMapTool", ctx.result["on"]

    cell = ctx.args["click_cell"]
    request = QgsFeatureRequest().setFilterExpression(f"\"h3_cell\" = '{cell}'")
    feature = next(layer.getFeatures(request))
    to_canvas = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), project)
    centre = to_canvas.transform(feature.geometry().centroid().asPoint())
    pixel = canvas.getCoordinateTransform().transform(centre)
    QTest.mouseClick(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(round(pixel.x()), round(pixel.y())))
    yield Wait(until=lambda: tool.last_row is not None, timeout=20)
    overlay = tool.overlay
    cells = {f.id(): str(f["h3_cell"]) for f in layer.getFeatures()}
    scores = [(cells[int(fid)], float(s)) for fid, s in zip(overlay.fids, overlay.scores)]
    ranked = sorted(scores, key=lambda cs: -cs[1])
    sample = overlay.result.dataProvider().identify(centre, QgsRaster.IdentifyFormatValue).results()
    ctx.result["click"] = {
        "cell": cells[int(overlay.fids[tool.last_row])],
        "ranked": ranked[:30],
        "n_scores": len(scores),
        "raster_at_click": float(sample[1]) if sample.get(1) is not None else None,
        "result_layer": overlay.result.name(),
        "result_in_project": tool.result_in_project(),
        "result_valid": overlay.result.isValid(),
        "renderer": overlay.result.renderer().type() if overlay.result.renderer() else None,
    }
    # the similarity map alone over the cells, for the screenshot
    root = project.layerTreeRoot()
    for other in project.mapLayers().values():
        if other.id() not in (layer.id(), overlay.result.id()):
            root.findLayer(other.id()).setItemVisibilityChecked(False)
    ctx.result["layer_order"] = [n.name() for n in root.findLayers()]
    canvas.refreshAllLayers()
    yield Wait(until=lambda: not canvas.isDrawing(), timeout=30)
    yield Wait(1.0)
    ctx.shot(window, "similarity_tool")

    # 3. off again: the pan tool is back; on once more (the similarity layer is now the active one, as QGIS makes
    # a new layer active): the same tool, the embeddings are read once
    ctx.result["active_after_click"] = iface.activeLayer().name() if iface.activeLayer() else None
    action.trigger()
    yield Wait(0.3)
    ctx.result["off"] = {"checked": action.isChecked(), "pan_back": canvas.mapTool() is pan}
    action.trigger()
    yield Wait(0.3)
    ctx.result["again_same_tool"] = canvas.mapTool() is tool
    # another map tool chosen by the user unchecks the action
    iface.actionZoomIn().trigger()
    yield Wait(0.3)
    zoom_in = canvas.mapTool()
    ctx.result["other_tool_unchecks"] = not action.isChecked()
    action.trigger()
    yield Wait(0.3)

    # 4. unload: the action leaves the menu and the toolbar, the previous map tool comes back
    from qgis.utils import unloadPlugin

    ctx.result["tool_before_unload"] = _tool_name(canvas)
    unloaded = unloadPlugin("mobclip")
    yield Wait(0.5)
    menu_after = [a.text() for m in iface.pluginMenu().actions() if m.menu() for a in m.menu().actions()]
    ctx.result["unload"] = {
        "unloaded": bool(unloaded),
        "plugin_gone": "mobclip" not in plugins,
        "menu": menu_after,
        "in_toolbar": any(
            a.objectName() == "mobclipFindSimilarPlaces" for bar in window.findChildren(QToolBar) for a in bar.actions()
        ),
        "tool": _tool_name(canvas),
        "zoom_in_back": canvas.mapTool() is zoom_in,
    }
