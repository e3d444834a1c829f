"""Host side of the desktop tests: a fresh QGIS profile with the built plugin zip, one real ``qgis`` start under
Xvfb per scenario, the results of the checks that ran inside it (``tests/desktop/``).

Add a check: write a generator function decorated with ``@check("my_check")`` in ``tests/desktop/checks_*.py``
(see ``driver.py``), add its name to a scenario's ``checks`` list in a ``tests/test_desktop*.py`` module and assert
on ``run.results["checks"]["my_check"]``. Each scenario starts QGIS once; checks share that start.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESKTOP = Path(__file__).resolve().parent / "desktop"
QGIS = "/usr/bin/qgis"
STOCK_PYTHON = "/usr/bin/python3.11"  # what QGIS embeds when /usr/bin is first on PATH


def require(*programs: str) -> None:
    """Skip (or fail, when the run requires QGIS) if a program the desktop tests need is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"missing {missing}: apt-get install qgis xvfb xauth"
        if os.environ.get("MOBCLIP_REQUIRE_QGIS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def stock_python_or_skip() -> str:
    if not Path(STOCK_PYTHON).exists():
        pytest.skip(f"{STOCK_PYTHON} is missing")
    probe = subprocess.run(
        [
            STOCK_PYTHON,
            "-I",
            "-c",
            "import importlib.util as u; print(u.find_spec('qgis') is None, u.find_spec('pandas') is None)",
        ],
        capture_output=True,
        text=True,
    )
    no_qgis, no_pandas = probe.stdout.split()
    if no_qgis == "True":
        pytest.skip("QGIS's Python bindings are not installed")
    if no_pandas != "True":
        pytest.skip("the system Python has pandas: it is not a stock QGIS Python")
    return STOCK_PYTHON


def build_zip(dest_dir: Path) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_plugin
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return build_plugin.build(dest_dir / "mobclip.zip")


def make_profile(root: Path, plugin_zip: Path, *, enable: bool = True) -> Path:
    """A fresh QGIS config folder (``QGIS_CUSTOM_CONFIG_PATH``) with the zip unpacked as a user would install it,
    the plugin enabled, and QGIS's first-start questions and network calls switched off."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str
    ini["PythonPlugins"] = {"mobclip": "true" if enable else "false"}
    ini["qgis"] = {"checkVersion": "false", "showTips": "false", "allowVersionCheck": "false"}
    ini["core"] = {"NewsFeed\\httpsfeedqgisorg\\disabled": "true"}
    (profile / "QGIS").mkdir(parents=True)
    with open(profile / "QGIS" / "QGIS3.ini", "w", encoding="utf-8") as fh:
        ini.write(fh, space_around_delimiters=False)
    return root


def clean_env(home: Path, path_first: str | None = None, **extra: str) -> dict[str, str]:
    """A user's environment, not the test runner's: no venv on PATH (unless asked), no PYTHONPATH, a fresh HOME."""
    runtime = home / "runtime"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "tmp").mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        # QGIS treats layers under the temp folder as temporary (and asks before exit); test data lives in /tmp
        "TMPDIR": str(home / "tmp"),
        "PATH": ":".join(p for p in (path_first, "/usr/bin", "/bin") if p),
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime),
        "HF_HUB_OFFLINE": "1",
    }
    for key in ("PIP_CACHE_DIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


@dataclass
class DesktopRun:
    returncode: int
    results: dict
    messages: list[dict]
    output: str  # QGIS's stdout and stderr
    seconds: float

    def check(self, name: str) -> dict:
        """The findings of check ``name``; fails with QGIS's output when it did not run, raised, or never ended
        (QGIS crashed or was killed while it ran)."""
        checks = self.results.get("checks", {})
        assert name in checks, f"check {name!r} did not run (exit code {self.returncode}):\n{self.output[-3000:]}"
        result = checks[name]
        assert "error" not in result, f"check {name!r} raised inside QGIS:\n{result['error']}"
        assert "seconds" in result, (
            f"check {name!r} never finished: QGIS ended with exit code {self.returncode} while it ran:\n"
            f"{self.output[-3000:]}"
        )
        return result

    def screenshots(self) -> dict[str, Path]:
        """{name: path} of every screenshot the checks took (each a PNG file that exists)."""
        shots = {Path(p).stem: Path(p) for c in self.results.get("checks", {}).values() for p in c.get("shots", [])}
        for path in shots.values():
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        return shots

    def python_errors(self) -> list[str]:
        """Python errors QGIS reported (the 'Python error' log tab, tracebacks on the console)."""
        errors = [m["msg"] for m in self.messages if m["tag"] == "Python error"]
        if "Traceback (most recent call last)" in self.output:
            errors.append(self.output[self.output.index("Traceback (most recent call last)") :][:3000])
        return errors


def run_qgis(
    config_root: Path,
    checks: list[str],
    work: Path,
    *,
    args: dict | None = None,
    path_first: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 600,
) -> DesktopRun:
    """Start ``qgis`` once under Xvfb with the profile at ``config_root``, run ``checks`` inside it, return when
    QGIS has exited (killed after ``timeout`` seconds)."""
    work.mkdir(parents=True, exist_ok=True)
    results, log = work / "results.json", work / "log.jsonl"
    spec = {
        "checks": checks,
        "args": args or {},
        "results": str(results),
        "shots": str(work / "shots"),
        "log": str(log),
        "driver_dir": str(DESKTOP),
    }
    (work / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    env = clean_env(
        work / "home",
        path_first,
        QGIS_CUSTOM_CONFIG_PATH=str(config_root),
        MOBCLIP_DESKTOP_SPEC=str(work / "spec.json"),
        MOBCLIP_DESKTOP_LOG=str(log),
        PYQGIS_STARTUP=str(DESKTOP / "startup.py"),
        **(extra_env or {}),
    )
    cmd = [
        "xvfb-run",
        "--auto-servernum",
        "--server-args=-screen 0 1600x1000x24",
        QGIS,
        "--nologo",
        "--noversioncheck",
        "--code",
        str(DESKTOP / "launch.py"),
    ]
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\n[killed after {timeout} s]"
    seconds = time.time() - t0
    data = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    messages = []
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                messages.append(json.loads(line))
            except ValueError:
                pass
    return DesktopRun(proc.returncode, data, messages, output, seconds)


def publish_screenshots(run: DesktopRun, names: dict[str, str], max_width: int = 960) -> None:
    """Copy screenshots to ``docs/`` (scaled down) when ``MOBCLIP_UPDATE_SCREENSHOTS=1``: {shot name: docs name}."""
    if os.environ.get("MOBCLIP_UPDATE_SCREENSHOTS") != "1":
        return
    shots = run.screenshots()
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage

    for shot, target in names.items():
        image = QImage(str(shots[shot]))
        if image.width() > max_width:
            image = image.scaledToWidth(max_width, Qt.SmoothTransformation)
        image.save(str(ROOT / "docs" / target), "PNG", 9)
