"""Runs inside the QGIS desktop app (``qgis --code launch.py`` imports it): executes the named checks one after
another in QGIS's event loop, writes their results to a JSON file, and quits QGIS the way a user does (File > Exit).

The host side (``tests/desktop_harness.py``) writes a spec file and passes its path in ``$MOBCLIP_DESKTOP_SPEC``:
``{"checks": [...], "args": {...}, "results": path, "shots": folder, "log": path}``.

A check is a generator function registered with ``@check("name")`` in any ``checks_*.py`` module of this folder.
It receives a :class:`Context`, may ``yield`` a :class:`Wait` (or a number of seconds) to let QGIS work, stores
what it finds in ``ctx.result`` (JSON-able) and takes screenshots with ``ctx.shot(widget, "name")``. An exception
in a check is recorded as ``{"error": traceback}`` and the next check runs. Only standard library and PyQGIS here:
this runs under QGIS's own Python, which may have nothing else.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path

CHECKS: dict[str, Callable[..., Generator]] = {}
RUNNERS: list = []


def check(name: str):
    def register(fn):
        CHECKS[name] = fn
        return fn

    return register


def text_fits(item) -> bool:
    """A message-bar item's text shows whole: QGIS hides what does not fit its one line behind scroll arrows."""
    from qgis.PyQt.QtWidgets import QTextEdit

    texts = [t for t in item.findChildren(QTextEdit) if t.isVisible()]
    return all(t.document().size().height() <= t.viewport().height() + 1 for t in texts)


class Wait:
    """Yield from a check: sleep ``seconds``, or poll ``until()`` every ``poll`` s for at most ``timeout`` s
    (then TimeoutError is thrown into the check)."""

    def __init__(self, seconds: float = 0.0, until: Callable[[], bool] | None = None, timeout: float = 60.0):
        self.seconds, self.until, self.timeout = seconds, until, timeout
        self.poll = 0.2


class Context:
    def __init__(self, spec: dict, name: str, shared: dict) -> None:
        from qgis.utils import iface

        self.iface = iface
        self.args = spec.get("args", {})
        self.shared = shared  # what earlier checks of this start left for later ones
        self.name = name
        self.result: dict = {}
        self.shots_dir = Path(spec["shots"])
        self.log_path = Path(spec["log"]) if spec.get("log") else None

    def shot(self, widget, name: str, height: int | None = None) -> str:
        """Save a screenshot of ``widget`` (``QWidget.grab``, its top ``height`` pixels if given) as
        ``<shots>/<name>.png``; returns the path."""
        from qgis.PyQt.QtCore import QRect
        from qgis.PyQt.QtWidgets import QApplication

        QApplication.processEvents()
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        path = self.shots_dir / f"{name}.png"
        image = widget.grab(QRect(0, 0, widget.width(), min(height, widget.height()))) if height else widget.grab()
        if not image.save(str(path)):
            raise OSError(f"could not save the screenshot {path}")
        self.result.setdefault("shots", []).append(str(path))
        return str(path)

    def messages(self) -> list[dict]:
        """Every QGIS log message since start-up: ``{"tag", "level", "msg"}`` (collected by startup.py)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


class Runner:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.names = list(spec["checks"])
        self.results: dict = {"checks": {}, "started": time.time()}
        self.shared: dict = {}
        self.current = None

    def start(self) -> None:
        from qgis.PyQt.QtCore import QTimer

        QTimer.singleShot(500, self.next_check)

    def next_check(self) -> None:
        self.save()  # after every check: a run that hangs or crashes later still tells what it saw
        if not self.names:
            self.finish()
            return
        name = self.names.pop(0)
        ctx = Context(self.spec, name, self.shared)
        self.results["checks"][name] = ctx.result
        self.results["running"] = name
        self.save()
        try:
            gen = CHECKS[name](ctx)
        except Exception:  # noqa: BLE001 - record and go on
            ctx.result["error"] = traceback.format_exc()
            self.schedule(0, self.next_check)
            return
        self.current = (name, ctx, gen, time.time())
        self.step(None)

    def step(self, throw: BaseException | None) -> None:
        name, ctx, gen, t0 = self.current
        try:
            wait = gen.throw(throw) if throw is not None else next(gen)
        except StopIteration:
            ctx.result.setdefault("seconds", round(time.time() - t0, 1))
            self.schedule(0, self.next_check)
            return
        except Exception:  # noqa: BLE001
            ctx.result["error"] = traceback.format_exc()
            ctx.result.setdefault("seconds", round(time.time() - t0, 1))
            self.schedule(0, self.next_check)
            return
        if not isinstance(wait, Wait):
            wait = Wait(seconds=float(wait or 0))
        if wait.until is None:
            self.schedule(wait.seconds, lambda: self.step(None))
        else:
            deadline = time.time() + wait.timeout
            self.poll(wait, deadline)

    def poll(self, wait: Wait, deadline: float) -> None:
        try:
            done = bool(wait.until())
        except Exception as exc:  # noqa: BLE001 - a failing predicate goes back into the check
            self.schedule(0, lambda e=exc: self.step(e))
            return
        if done:
            self.schedule(0, lambda: self.step(None))
        elif time.time() > deadline:
            self.schedule(0, lambda: self.step(TimeoutError(f"waited {wait.timeout} s")))
        else:
            self.schedule(wait.poll, lambda: self.poll(wait, deadline))

    def save(self) -> None:
        path = Path(self.spec["results"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def schedule(seconds: float, fn) -> None:
        from qgis.PyQt.QtCore import QTimer

        QTimer.singleShot(int(seconds * 1000), fn)

    def finish(self) -> None:
        from qgis.core import QgsProject
        from qgis.utils import iface

        self.results["finished"] = time.time()
        self.results.pop("running", None)
        self.save()
        QgsProject.instance().setDirty(False)  # no "save the project?" question on exit
        self.schedule(20, self.exit_blocked)  # still alive then: something (a question, a task) holds QGIS open
        iface.actionExit().trigger()

    def exit_blocked(self) -> None:
        """QGIS did not exit 20 s after File > Exit: record what is on screen, then leave with exit code 3."""
        from qgis.core import QgsApplication
        from qgis.PyQt.QtWidgets import QApplication

        shots = Path(self.spec["shots"])
        blocked = []
        for i, widget in enumerate(w for w in QApplication.topLevelWidgets() if w.isVisible()):
            path = shots / f"exit_blocked_{i}.png"
            widget.grab().save(str(path))
            blocked.append({"class": type(widget).__name__, "title": widget.windowTitle(), "shot": str(path)})
        self.results["exit_blocked"] = {
            "widgets": blocked,
            "active_tasks": [t.description() for t in QgsApplication.taskManager().activeTasks()],
        }
        self.save()
        QgsApplication.exit(3)


def main() -> None:
    spec = json.loads(Path(os.environ["MOBCLIP_DESKTOP_SPEC"]).read_text(encoding="utf-8"))
    for module in sorted(Path(spec["driver_dir"]).glob("checks_*.py")):
        importlib.import_module(module.stem)
    RUNNERS.append(Runner(spec))  # PyQt holds bound-method slots weakly: keep the runner alive
    RUNNERS[-1].start()
