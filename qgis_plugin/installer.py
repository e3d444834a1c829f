"""Install the plugin's Python packages into a folder the plugin manages, outside the plugin folder.

QGIS-free (standard library only): the installer dialog is a thin Qt layer over :func:`install`, and tests and
headless set-ups call it directly. Layout, one folder per QGIS Python (plugin updates never touch it)::

    <QGIS profile>/python/mobclip-deps/          (or $MOBCLIP_DEPS_DIR)
        py311-linux-x86_64-1a2b3c4d/             Python version, platform, hash of the interpreter's prefix
            state.json                           the active site, its tiers and packages, QGIS's numpy
            site-20260801-101500/                ``pip install --target``; put first on sys.path at plugin load
            install.log, constraints.txt         the last pip run, for bug reports

Rules that keep QGIS working: pip runs as a child process of QGIS's own Python, with binary wheels only and a
constraints file that pins the numpy QGIS (GDAL) is built against and forbids any Qt binding or a pip GDAL;
packages QGIS already has at the same version are removed from the new folder, so it never holds a second
numpy. A new install goes into a fresh folder that replaces the old one only when pip succeeded and every module
of the chosen tiers imports in QGIS's Python: a failed or cancelled install leaves the previous state untouched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import queue
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # run as a file (see main): use the mobclip_core the plugin folder bundles
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobclip_core import dependencies as deps  # noqa: E402
from mobclip_core.exceptions import DependencyInstallError  # noqa: E402

STATE_FORMAT = 1
DEPS_DIR_ENV = "MOBCLIP_DEPS_DIR"
TORCH_INDEX_ENV = "MOBCLIP_TORCH_INDEX"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Distributions QGIS links against: never installed by us (a second Qt or GDAL in the QGIS process breaks it).
FORBIDDEN = ("PyQt5", "PyQt5-sip", "PyQt5-Qt5", "PyQt6", "PyQt6-sip", "PyQt6-Qt6", "PySide2", "PySide6", "GDAL")
# Environment variables of the user's pip set-up that contradict ``--target``.
_PIP_ENV_CONFLICTS = ("PIP_REQUIRE_VIRTUALENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_NO_BINARY")


class Cancelled(DependencyInstallError):
    """The user cancelled the install; nothing was changed."""


# --- where ------------------------------------------------------------------------------------------------
def canonical(name: str) -> str:
    """PEP 503 name: ``PyQt5_sip`` and ``pyqt5-sip`` are the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def folder_key(version: tuple[int, int] | None = None, plat: str | None = None, prefix: str | None = None) -> str:
    """``py311-linux-x86_64-1a2b3c4d``: two QGIS installs (or Pythons) never share packages."""
    major, minor = version or sys.version_info[:2]
    plat = re.sub(r"[^A-Za-z0-9_-]+", "_", plat or sysconfig.get_platform())
    digest = hashlib.sha256(os.path.normcase(os.path.abspath(prefix or sys.prefix)).encode()).hexdigest()[:8]
    return f"py{major}{minor}-{plat}-{digest}"


def default_root(qgis_settings_dir: str | os.PathLike | None) -> Path:
    """``$MOBCLIP_DEPS_DIR``, else ``<QGIS profile>/python/mobclip-deps`` (outside ``python/plugins``)."""
    if os.environ.get(DEPS_DIR_ENV):
        return Path(os.environ[DEPS_DIR_ENV]).expanduser()
    if qgis_settings_dir is None:
        raise DependencyInstallError(f"No QGIS profile folder known: set {DEPS_DIR_ENV} to a writable folder")
    return Path(qgis_settings_dir) / "python" / "mobclip-deps"


@dataclass
class Activation:
    site: Path | None  # the site on sys.path now (None: nothing installed)
    restart_needed: bool  # packages from an older site are loaded: QGIS must restart to use the new ones


class DepsFolder:
    """The packages folder of one QGIS Python: which site is active, activation at load, removal."""

    def __init__(self, root: str | os.PathLike, key: str | None = None) -> None:
        self.root = Path(root)
        self.path = self.root / (key or folder_key())

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def log_file(self) -> Path:
        return self.path / "install.log"

    def state(self) -> dict | None:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None

    def active_site(self) -> Path | None:
        state = self.state()
        if not state or not state.get("site"):
            return None
        site = self.path / state["site"]
        return site if site.is_dir() else None

    def installed_tiers(self) -> list[str]:
        state = self.state()
        return list(state.get("tiers", [])) if state and self.active_site() else []

    def activate(self) -> Activation:
        """Put the active site first on sys.path (plugin start-up, or right after an install) and clean up sites
        left by earlier installs. A different site of this folder that is already in use stays until restart."""
        site = self.active_site()
        current = [p for p in deps.added_sites() if Path(p).parent == self.path]
        for old in current:
            if site is not None and Path(old) == site:
                continue
            if deps.loaded_from(old):
                self.cleanup()
                return Activation(Path(old), restart_needed=True)
            deps.remove_site(old)
        if site is not None:
            deps.add_site(site)
        self.cleanup()
        return Activation(site, restart_needed=False)

    def cleanup(self) -> None:
        """Delete sites that are no longer active (best effort: Windows keeps loaded ones until QGIS restarts)."""
        if not self.path.is_dir():
            return
        active = self.active_site()
        loaded = set(deps.added_sites())
        for child in self.path.iterdir():
            if not child.is_dir() or not child.name.startswith("site-") or child == active or str(child) in loaded:
                continue
            if child.name.endswith(".partial") and time.time() - child.stat().st_mtime < 6 * 3600:
                continue  # maybe an install running in another QGIS window; a cancelled one is removed by itself
            shutil.rmtree(child, ignore_errors=True)

    def write_state(self, state: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def remove(self) -> bool:
        """Forget every installed package. True when everything is gone now, False when QGIS must restart first
        (modules from the folder are loaded; it is deleted at the next start)."""
        try:
            self.state_file.unlink()
        except FileNotFoundError:
            pass
        for old in [p for p in deps.added_sites() if Path(p).parent == self.path]:
            if not deps.loaded_from(old):
                deps.remove_site(old)
        self.cleanup()
        return not self.path.is_dir() or not any(p.name.startswith("site-") for p in self.path.iterdir())

    def stale_reason(self, qgis_numpy: str | None) -> str | None:
        """Why the installed packages may not fit this QGIS any more (its numpy changed), or None."""
        state = self.state()
        if not state or not self.active_site():
            return None
        was = state.get("qgis_numpy")
        if was and qgis_numpy and was != qgis_numpy:
            return (
                f"The packages were installed for QGIS's numpy {was}; this QGIS has numpy {qgis_numpy}. "
                f"Run {deps.INSTALL_ACTION} again."
            )
        return None


# --- facts about QGIS's Python ----------------------------------------------------------------------------
_PROBE = r"""
import json, os, sys, sysconfig
from importlib import metadata
dists = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        dists.setdefault(name, d.version)
try:
    import pip
    pip_version = pip.__version__
except Exception:
    pip_version = None
wheel_dirs = [sysconfig.get_config_var("WHEEL_PKG_DIR"), "/usr/share/python-wheels"]
try:
    import ensurepip
    wheel_dirs.append(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled"))
except Exception:
    pass
wheels = []
for d in wheel_dirs:
    if d and os.path.isdir(d):
        wheels += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.startswith("pip-") and f.endswith(".whl")]
print(json.dumps({"version": list(sys.version_info[:3]), "platform": sysconfig.get_platform(),
                  "prefix": sys.prefix, "pip": pip_version, "dists": dists, "pip_wheels": wheels}))
"""


@dataclass
class PythonFacts:
    python: Path
    version: tuple[int, int, int]
    platform: str
    prefix: str
    pip: str | None  # pip's version when ``python -m pip`` works
    dists: dict[str, str]  # distributions QGIS's Python already has: name -> version
    pip_wheels: list[str] = field(default_factory=list)  # pip wheels shipped with this Python (ensurepip, Debian)

    def dist_version(self, name: str) -> str | None:
        want = canonical(name)
        return next((v for n, v in self.dists.items() if canonical(n) == want), None)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment pip and the probes run in: the user's own pip set-up, minus what contradicts --target."""
    env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_CONFLICTS}
    env.update(PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra or {})
    return env


def probe(python: str | os.PathLike) -> PythonFacts:
    """Ask QGIS's Python (a child process, without the plugin's folder) what it is and what it has."""
    try:
        out = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
            creationflags=deps.no_window_flags(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DependencyInstallError(f"Cannot run QGIS's Python {python}: {exc}") from exc
    if out.returncode != 0:
        raise DependencyInstallError(f"QGIS's Python {python} failed to report its packages:\n{out.stderr[-2000:]}")
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    return PythonFacts(
        Path(python), tuple(raw["version"]), raw["platform"], raw["prefix"], raw["pip"], raw["dists"], raw["pip_wheels"]
    )


# --- what pip gets ----------------------------------------------------------------------------------------
# releases that need a newer numpy than QGIS may have: (cap, the numpy they need). pyarrow 26 declares no numpy
# floor but refuses numpy 1.x at import time; for the others the cap only saves pip from downloading each newer
# release in turn to find out (a Debian 12 QGIS, numpy 1.24.2: about 200 MB of pandas 3.x and scipy 1.16.x wheels)
NUMPY_BOUND_CAPS = (("pyarrow<26", (2, 0)), ("pandas<3", (1, 26)), ("scipy<1.16", (1, 25, 2)))


def constraints(facts: PythonFacts) -> list[str]:
    """Pins that keep what QGIS links against: its own numpy (and releases that work with it), no Qt binding, no
    pip-installed GDAL."""
    lines = []
    numpy = facts.dist_version("numpy")
    if numpy:
        lines.append(f"numpy=={numpy}")
        have = tuple(int(p) for p in re.findall(r"\d+", numpy)[:3])
        lines += [cap for cap, needs in NUMPY_BOUND_CAPS if have < needs]
    lines += [f"{name}<0" for name in FORBIDDEN]  # nothing may pull these in: pip fails and says which package
    return lines


def requirements_for(tier_keys: Iterable[str]) -> list[str]:
    out: list[str] = []
    for key in tier_keys:
        for req in deps.TIERS[key].requirements:
            if req not in out:
                out.append(req)
    return out


def tier_union(requested: Iterable[str], installed: Iterable[str] = ()) -> list[str]:
    """Tiers in table order: a new install keeps the tiers already installed."""
    wanted = set(requested) | set(installed)
    unknown = wanted - set(deps.TIERS)
    if unknown:
        raise DependencyInstallError(f"Unknown tier(s) {sorted(unknown)}: choose from {sorted(deps.TIERS)}")
    return [k for k in deps.TIERS if k in wanted]


def default_torch_index(system: str | None = None, machine: str | None = None) -> str | None:
    """Linux gets torch's CPU build from PyTorch's index (PyPI's Linux torch is a multi-GB CUDA build).

    ``$MOBCLIP_TORCH_INDEX`` overrides it (an empty value means PyPI only, e.g. behind a firewall or for CUDA).
    """
    if TORCH_INDEX_ENV in os.environ:
        return os.environ[TORCH_INDEX_ENV] or None
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    return TORCH_CPU_INDEX if system == "Linux" and machine in ("x86_64", "amd64", "aarch64") else None


def pip_prefix(facts: PythonFacts, pip_wheel: str | os.PathLike | None = None) -> list[str]:
    """How to call pip: ``python -m pip``, or pip straight from its wheel when this Python has no pip."""
    if facts.pip:
        return [str(facts.python), "-m", "pip"]
    if pip_wheel is None:
        raise DependencyInstallError(f"QGIS's Python {facts.python} has no pip and no pip wheel was found")
    return [str(facts.python), os.path.join(str(pip_wheel), "pip")]  # pip runs from its wheel (see pip/__main__)


def pip_version(facts: PythonFacts, pip_wheel: str | os.PathLike | None) -> tuple[int, ...]:
    text = facts.pip or re.sub(r"^pip-([0-9.]+)-.*$", r"\1", Path(str(pip_wheel)).name)
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def pip_command(
    facts: PythonFacts,
    target: str | os.PathLike,
    requirements: list[str],
    constraints_file: str | os.PathLike,
    *,
    pip_wheel: str | os.PathLike | None = None,
    extra_index: str | None = None,
) -> list[str]:
    """The pip call: wheels only, into ``target``, under the constraints, with output a program can follow."""
    progress = "raw" if pip_version(facts, pip_wheel) >= (24, 1) else "off"
    cmd = [
        *pip_prefix(facts, pip_wheel),
        "install",
        "--target",
        str(target),
        "--only-binary",
        ":all:",
        "--constraint",
        str(constraints_file),
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--progress-bar",
        progress,
    ]
    if pip_version(facts, pip_wheel) >= (22, 1):
        cmd += ["--root-user-action", "ignore"]  # the folder is the user's own, whoever runs QGIS
    if extra_index:
        cmd += ["--extra-index-url", extra_index]
    return cmd + list(requirements)


# --- pip output -> progress -------------------------------------------------------------------------------
class PipProgress:
    """Turns pip's output lines into a percentage (0-90; verification takes the rest) and a short status."""

    _raw = re.compile(r"^Progress (\d+) of (\d+)$")
    _wheel = re.compile(r"^([A-Za-z0-9_.]+?)-(\d[^-]*)-.*?\.whl( \(.*\))?$")

    def __init__(self) -> None:
        self.percent = 0.0
        self.status = "Starting pip"
        self.collected = 0

    def feed(self, line: str) -> bool:
        """Update from one line; True when percent or status changed enough to show."""
        line = line.strip()
        before = (int(self.percent), self.status)
        raw = self._raw.match(line)
        if raw:
            done, total = int(raw.group(1)), int(raw.group(2))
            if total:
                self.status = re.sub(r" \(\d+%\)$", "", self.status) + f" ({100 * done // total}%)"
        elif line.startswith("Collecting "):
            self.collected += 1
            self.percent = max(self.percent, 60.0 * (1 - 1 / (1 + self.collected / 10)))
            self.status = f"Resolving {line.split()[1]}"
        elif line.startswith("Downloading ") or line.startswith("Using cached "):
            what = re.sub(r"^(Downloading|Using cached) ", "", line).split("/")[-1]
            wheel = self._wheel.match(what)  # pandas-2.3.3-cp311-...whl (12.8 MB) -> pandas 2.3.3 (12.8 MB)
            self.status = "Downloading " + (f"{wheel.group(1)} {wheel.group(2)}{wheel.group(3)}" if wheel else what)
        elif line.startswith("Installing collected packages"):
            self.percent = max(self.percent, 65.0)
            self.status = "Installing " + line.split(":", 1)[-1].strip()
            if len(self.status) > 90:
                self.status = self.status[:87] + "..."
        elif line.startswith("Successfully installed"):
            self.percent, self.status = 90.0, "Checking the installed packages"
        return (int(self.percent), self.status) != before


def run_logged(
    cmd: list[str],
    *,
    env: dict[str, str],
    log,
    on_line: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    cwd: str | os.PathLike | None = None,
) -> int:
    """Run ``cmd``, streaming merged stdout/stderr lines to ``log`` and ``on_line``; stop it within a second of
    ``cancelled()`` turning true (then raise Cancelled)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        creationflags=deps.no_window_flags(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for raw in proc.stdout:
            lines.put(raw.rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        done = False
        while not done:
            if cancelled():
                _stop(proc)
                reader.join(timeout=5)
                log.write("[cancelled by the user]\n")
                raise Cancelled("Cancelled by the user: nothing was installed or changed")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                done = True
                continue
            log.write(line + "\n")
            if on_line is not None:
                on_line(line)
        return proc.wait()
    finally:
        if not reader.is_alive():  # a pipe still held by a grandchild of pip is left to the reader thread
            proc.stdout.close()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- after pip ------------------------------------------------------------------------------------------
@dataclass
class Dist:
    name: str
    version: str
    dist_info: Path
    files: list[Path]


def dists_in(site: Path) -> list[Dist]:
    """Distributions pip put into ``site``, from their ``*.dist-info/METADATA`` and ``RECORD``."""
    out = []
    for info in sorted(site.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(encoding="utf-8", errors="replace") if (info / "METADATA").exists() else ""
        name = re.search(r"^Name: *(.+)$", meta, re.M)
        version = re.search(r"^Version: *(.+)$", meta, re.M)
        files = []
        if (info / "RECORD").exists():
            with open(info / "RECORD", encoding="utf-8", errors="replace", newline="") as record:
                for row in csv.reader(record):
                    if row and row[0]:
                        # --target moves scripts from <scheme>/bin to <site>/bin; RECORD still says ../../bin/
                        rel = re.sub(r"^(\.\./)+bin/", "bin/", row[0])
                        files.append((site / rel).resolve())
        out.append(
            Dist(name.group(1).strip() if name else info.name, version.group(1).strip() if version else "", info, files)
        )
    return out


def prune_duplicates(site: Path, facts: PythonFacts) -> list[str]:
    """Delete from ``site`` every distribution QGIS's Python already has at the same version (its numpy, ...):
    the folder never holds a second copy of what QGIS runs on. Returns ``name==version`` of what was removed."""
    removed = []
    site_resolved = site.resolve()
    for dist in dists_in(site):
        if facts.dist_version(dist.name) != dist.version:
            continue
        for path in dist.files:
            if site_resolved in path.parents and path.is_file():
                path.unlink()
        shutil.rmtree(dist.dist_info, ignore_errors=True)
        removed.append(f"{dist.name}=={dist.version}")
    for folder in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def forbidden_in(site: Path) -> list[str]:
    bad = {canonical(n) for n in FORBIDDEN}
    return [f"{d.name}=={d.version}" for d in dists_in(site) if canonical(d.name) in bad]


_IMPORT_CHECK = r"""
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def import_check(facts: PythonFacts, site: Path, modules: Iterable[str], log) -> dict[str, str]:
    """Import every module in QGIS's Python with ``site`` first on the path: {module: error} for failures."""
    env = child_env({"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"})
    out = subprocess.run(
        [str(facts.python), "-c", _IMPORT_CHECK, *modules],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        creationflags=deps.no_window_flags(),
    )
    log.write(f"\n$ import check ({' '.join(modules)})\n{out.stderr[-4000:]}")
    if out.returncode != 0:
        return {"(import check)": out.stderr[-2000:] or f"exit code {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the install ----------------------------------------------------------------------------------------
@dataclass
class InstallResult:
    site: Path
    tiers: list[str]
    packages: dict[str, str]  # what the new site holds: name -> version
    pruned: list[str]  # duplicates of QGIS's own packages that were removed
    log_file: Path


def install(
    tiers: Iterable[str],
    folder: DepsFolder,
    *,
    python: str | os.PathLike | None = None,
    on_line: Callable[[str], None] | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    extra_index: str | None = "auto",
) -> InstallResult:
    """Install ``tiers`` (plus the tiers already installed) into a fresh site of ``folder`` and make it the active
    one on disk (``folder.activate()`` then puts it on sys.path, or says that QGIS must restart first).

    Raises Cancelled or DependencyInstallError (with the reason and the log's path); the previous site stays
    active in both cases.
    """
    report = on_progress or (lambda pct, status: None)
    report(0.0, "Looking at QGIS's Python")
    facts = _probe_qgis_python(Path(python) if python else deps.find_python())
    wanted = tier_union(tiers, folder.installed_tiers())
    if extra_index == "auto":
        extra_index = default_torch_index() if "training" in wanted else None
    folder.path.mkdir(parents=True, exist_ok=True)
    staging, final = _new_site_paths(folder)
    constraints_file = folder.path / "constraints.txt"
    constraints_file.write_text("\n".join(constraints(facts)) + "\n", encoding="utf-8")
    line_seen = _pip_line_handler(on_line, report)
    with open(folder.log_file, "w", encoding="utf-8") as log:
        log.write(_log_header(facts, wanted, constraints_file))
        try:
            _run_pip(facts, folder, staging, wanted, constraints_file, extra_index, log, line_seen, cancelled)
            pruned = _check_staged_site(facts, folder, staging, wanted, log, report, cancelled)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    packages = _record_install(folder, final, wanted, facts, pruned)
    folder.cleanup()
    report(100.0, "Installed")
    return InstallResult(final, wanted, packages, pruned, folder.log_file)


def _probe_qgis_python(python: Path) -> PythonFacts:
    """The facts of ``python``, refused unless it is QGIS's Python version (its packages would not load)."""
    facts = probe(python)
    if tuple(facts.version[:2]) != tuple(sys.version_info[:2]):
        raise DependencyInstallError(
            f"{python} is Python {'.'.join(map(str, facts.version))} but QGIS runs Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}: packages for it would not load in QGIS"
        )
    return facts


def _new_site_paths(folder: DepsFolder) -> tuple[Path, Path]:
    """A fresh site's staging and final folders, named by the time, never an existing one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while (folder.path / f"site-{stamp}").exists():
        stamp += "x"
    return folder.path / f"site-{stamp}.partial", folder.path / f"site-{stamp}"


def _pip_line_handler(
    on_line: Callable[[str], None] | None, report: Callable[[float, str], None]
) -> Callable[[str], None]:
    """What each line of pip's output goes to: ``on_line``, and the progress read from it."""
    progress = PipProgress()

    def line_seen(line: str) -> None:
        if on_line is not None:
            on_line(line)
        if progress.feed(line):
            report(progress.percent, progress.status)

    return line_seen


def _run_pip(
    facts: PythonFacts,
    folder: DepsFolder,
    staging: Path,
    wanted: list[str],
    constraints_file: Path,
    extra_index: str | None,
    log,
    line_seen: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> None:
    """pip install into ``staging`` (its build files in a scratch folder), raising with pip's error when it fails."""
    pip_wheel = None if facts.pip else _pip_wheel(facts, folder, log)
    cmd = pip_command(
        facts,
        staging,
        requirements_for(wanted),
        constraints_file,
        pip_wheel=pip_wheel,
        extra_index=extra_index,
    )
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    with tempfile.TemporaryDirectory(prefix="mobclip-pip-") as scratch:
        scratch_env = child_env({"TMPDIR": scratch, "TEMP": scratch, "TMP": scratch})  # pip's build files
        rc = run_logged(cmd, env=scratch_env, log=log, on_line=line_seen, cancelled=cancelled)
    if rc != 0:
        raise DependencyInstallError(
            f"pip failed (exit code {rc}): {_pip_error(folder.log_file, log)} "
            f"The full log is {folder.log_file} (Copy diagnostics puts it on the clipboard)."
        )


def _check_staged_site(
    facts: PythonFacts,
    folder: DepsFolder,
    staging: Path,
    wanted: list[str],
    log,
    report: Callable[[float, str], None],
    cancelled: Callable[[], bool],
) -> list[str]:
    """Make the staged site safe for QGIS: drop copies of its packages, refuse forbidden ones, import every module.

    Returns the pruned duplicates; raises (nothing changed) when the site would not work in QGIS or on a cancel.
    """
    report(91.0, "Removing copies of packages QGIS already has")
    pruned = prune_duplicates(staging, facts)
    log.write(f"\nremoved duplicates of QGIS's own packages: {', '.join(pruned) or 'none'}\n")
    bad = forbidden_in(staging)
    if bad:
        raise DependencyInstallError(f"pip installed packages QGIS links against: {bad}; nothing was changed")
    report(93.0, "Checking that every package imports in QGIS's Python")
    modules = [m for key in wanted for m in deps.TIERS[key].modules]
    failed = import_check(facts, staging, dict.fromkeys(modules), log)
    if cancelled():
        raise Cancelled("Cancelled by the user: nothing was installed or changed")
    if failed:
        details = "; ".join(f"{m}: {e}" for m, e in failed.items())
        raise DependencyInstallError(
            f"The packages installed but do not import in QGIS's Python ({details}). Nothing was changed; "
            f"the full log is {folder.log_file}."
        )
    return pruned


def _record_install(
    folder: DepsFolder, final: Path, wanted: list[str], facts: PythonFacts, pruned: list[str]
) -> dict[str, str]:
    """Make ``final`` the active site in ``state.json``, with what it holds; returns its packages."""
    packages = {d.name: d.version for d in dists_in(final)}
    folder.write_state(
        {
            "format": STATE_FORMAT,
            "site": final.name,
            "tiers": wanted,
            "python": ".".join(map(str, facts.version)),
            "python_executable": str(facts.python),
            "platform": facts.platform,
            "qgis_numpy": facts.dist_version("numpy"),
            "packages": packages,
            "pruned": pruned,
            "installed_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return packages


def _log_header(facts: PythonFacts, tiers: list[str], constraints_file: Path) -> str:
    return (
        f"MobCLIP dependency install, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        f"python: {facts.python} ({'.'.join(map(str, facts.version))}, {facts.platform}), pip {facts.pip}\n"
        f"tiers: {', '.join(tiers)}\n"
        f"constraints ({constraints_file}):\n  " + constraints_file.read_text(encoding="utf-8").replace("\n", "\n  ")
    ).rstrip() + "\n"


def _pip_error(log_path: Path, log) -> str:
    """The lines of pip's output that say what went wrong (ERROR lines), shortened."""
    log.flush()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    errors = [ln.strip() for ln in text.splitlines() if ln.startswith("ERROR") or "conflict" in ln.lower()]
    msg = " ".join(errors[-4:]) or "see the log"
    if "Could not find a version" in msg or "No matching distribution" in msg:
        msg += " (is the package index reachable? pip uses your pip.conf and proxy settings)"
    return msg[:1200]


def _pip_wheel(facts: PythonFacts, folder: DepsFolder, log) -> Path:
    """A pip wheel to run pip from when QGIS's Python has none: the one shipped with Python, else PyPI's."""
    if facts.pip_wheels:
        log.write(f"QGIS's Python has no pip module; running pip from {facts.pip_wheels[-1]}\n")
        return Path(facts.pip_wheels[-1])
    tools = folder.root / "_pip"
    have = sorted(tools.glob("pip-*.whl"))
    if have:
        return have[-1]
    log.write("QGIS's Python has no pip; downloading pip's wheel from PyPI\n")
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as response:
            release = json.load(response)
        wheel = next(u for u in release["urls"] if u["filename"].endswith("-py3-none-any.whl"))
        with urllib.request.urlopen(wheel["url"], timeout=300) as response:
            data = response.read()
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise DependencyInstallError(
            f"QGIS's Python has no pip and pip could not be downloaded from PyPI ({exc}). Install pip for QGIS's "
            "Python (Debian/Ubuntu: apt install python3-pip), then try again."
        ) from exc
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        raise DependencyInstallError("The pip wheel downloaded from PyPI does not match its published checksum")
    tools.mkdir(parents=True, exist_ok=True)
    path = tools / wheel["filename"]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# --- status and diagnostics --------------------------------------------------------------------------------
@dataclass
class PackageStatus:
    module: str
    name: str
    version: str | None  # None when missing
    where: str  # "MobCLIP packages folder", "QGIS", or "missing"


def tier_status(tier: str, folder: DepsFolder) -> list[PackageStatus]:
    """Each package of ``tier`` as this QGIS sees it now (no import: find_spec and package metadata)."""
    import importlib.util
    from importlib import metadata

    site = folder.active_site()
    out = []
    for module in deps.TIERS[tier].modules:
        pkg = deps.PACKAGES[module]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            out.append(PackageStatus(module, pkg.name, None, "missing"))
            continue
        origin = spec.origin or (list(spec.submodule_search_locations or [""])[0])
        in_site = site is not None and os.path.abspath(origin).startswith(os.path.abspath(site) + os.sep)
        try:
            version = metadata.version(pkg.name)
        except metadata.PackageNotFoundError:
            version = "?"
        out.append(PackageStatus(module, pkg.name, version, "MobCLIP packages folder" if in_site else "QGIS"))
    return out


def diagnostics(folder: DepsFolder, *, qgis_version: str = "", log_lines: int = 60) -> str:
    """A plain-text report to paste into a bug report: versions, folders, each tier's packages, the pip log."""
    state = folder.state() or {}
    lines = [
        "MobCLIP dependency diagnostics",
        f"QGIS: {qgis_version or 'unknown'}",
        f"Python: {sys.version.split()[0]} ({sys.executable}; prefix {sys.prefix})",
        f"Platform: {platform.platform()} ({sysconfig.get_platform()})",
        f"Packages folder: {folder.path}",
        f"Active site: {folder.active_site() or 'none'}; tiers {', '.join(state.get('tiers', [])) or 'none'}; "
        f"installed {state.get('installed_at', '-')}",
        f"QGIS's numpy at install time: {state.get('qgis_numpy', '-')}",
    ]
    for key, tier in deps.TIERS.items():
        lines.append(f"\n[{tier.title}]")
        for st in tier_status(key, folder):
            lines.append(f"  {st.name:24s} {st.version or '-':14s} {st.where}")
    if folder.log_file.exists():
        log = folder.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        lines.append(f"\nLast pip log ({folder.log_file}, last {log_lines} lines):")
        lines += [ln for ln in log if not ln.startswith("Progress ")][-log_lines:]
    return "\n".join(lines)


def headless_command(tier: str, qgis_settings_dir: str | os.PathLike) -> str:
    """The command that installs ``tier`` without the QGIS window (e.g. a server that runs qgis_process)."""
    try:
        python = str(deps.find_python())
    except DependencyInstallError:
        python = "python3"
    return f'"{python}" "{Path(__file__).resolve()}" {tier} --profile "{qgis_settings_dir}"'


def main(argv: list[str] | None = None) -> int:
    """Install MobCLIP's Python packages without the QGIS window (e.g. on a server that runs qgis_process), with
    the Python QGIS uses: python3 <plugin folder>/qgis_plugin/installer.py maps --profile <QGIS profile folder>"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("tiers", nargs="+", choices=sorted(deps.TIERS))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--profile", help="the QGIS profile folder (its python/mobclip-deps is used)")
    where.add_argument("--root", help=f"the packages folder itself (default: ${DEPS_DIR_ENV})")
    args = parser.parse_args(argv)
    folder = DepsFolder(args.root or default_root(args.profile))
    last = [""]

    def show(pct: float, status: str) -> None:
        if status != last[0]:
            print(f"[{pct:3.0f}%] {status}", flush=True)
            last[0] = status

    try:
        result = install(args.tiers, folder, on_progress=show)
    except DependencyInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"installed {', '.join(result.tiers)} into {result.site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
