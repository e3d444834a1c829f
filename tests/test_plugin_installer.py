"""The dependency installer's logic (QGIS-free): folders, constraints, the pip command, progress, pruning,
activation, cancellation, and a real offline pip run into a temporary folder; then the dialog's "Check again" in a
real (offscreen) QGIS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from mobclip_core import dependencies as deps
from mobclip_core.exceptions import DependencyInstallError
from qgis_plugin import installer


def facts(**kw) -> installer.PythonFacts:
    base = dict(
        python=Path(sys.executable),
        version=(3, 11, 2),
        platform="linux-x86_64",
        prefix="/usr",
        pip="23.0.1",
        dists={"numpy": "1.24.2", "PyQt5": "5.15.9"},
        pip_wheels=[],
    )
    base.update(kw)
    return installer.PythonFacts(**base)


@pytest.fixture
def clean_sys_path():
    """Activation edits sys.path and the list of added sites: restore both."""
    path, added = list(sys.path), deps.added_sites()
    yield
    sys.path[:] = path
    deps._ADDED_PATHS[:] = added


# --- where ------------------------------------------------------------------------------------------------
def test_folder_key_separates_python_versions_platforms_and_installs():
    key = installer.folder_key((3, 11), "linux-x86_64", "/usr")
    assert key.startswith("py311-linux-x86_64-") and len(key.split("-")[-1]) == 8
    assert installer.folder_key((3, 12), "linux-x86_64", "/usr") != key
    assert installer.folder_key((3, 11), "linux-x86_64", "/opt/qgis") != key
    assert installer.folder_key((3, 12), "macosx-11.0-arm64", "/x").startswith("py312-macosx-11_0-arm64-")


def test_default_root_is_outside_the_plugin_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(installer.DEPS_DIR_ENV, raising=False)
    profile = tmp_path / "profiles" / "default"
    root = installer.default_root(profile)
    assert root == profile / "python" / "mobclip-deps"
    assert (profile / "python" / "plugins") not in root.parents
    monkeypatch.setenv(installer.DEPS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert installer.default_root(profile) == tmp_path / "elsewhere"


# --- what pip gets ----------------------------------------------------------------------------------------
def test_constraints_pin_qgis_numpy_and_forbid_qt_and_gdal():
    lines = installer.constraints(facts())
    assert "numpy==1.24.2" in lines and "pyarrow<26" in lines
    for name in ("PyQt5", "PyQt5-sip", "PyQt6", "PySide6", "GDAL"):
        assert f"{name}<0" in lines
    assert "pandas<3" in lines and "scipy<1.16" in lines  # they need numpy 1.26 / 1.25.2: pip need not try them
    assert "pyarrow<26" not in installer.constraints(facts(dists={"numpy": "2.1.0"}))
    assert not {"pandas<3", "scipy<1.16"} & set(installer.constraints(facts(dists={"numpy": "2.1.0"})))
    assert "scipy<1.16" not in installer.constraints(facts(dists={"numpy": "1.25.2"}))
    assert not any(line.startswith("numpy") for line in installer.constraints(facts(dists={})))


def test_pip_command_is_wheels_only_into_the_target_under_the_constraints(tmp_path):
    cmd = installer.pip_command(facts(), tmp_path / "site", ["h3>=4.1,<5", "pandas>=2.0"], tmp_path / "c.txt")
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "site")
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert cmd[cmd.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert cmd[-2:] == ["h3>=4.1,<5", "pandas>=2.0"]
    assert cmd[cmd.index("--progress-bar") + 1] == "off"  # pip 23 has no machine-readable progress
    assert "--user" not in cmd and "--extra-index-url" not in cmd
    newer = installer.pip_command(facts(pip="24.2"), "t", ["x"], "c", extra_index="https://idx")
    assert newer[newer.index("--progress-bar") + 1] == "raw"
    assert newer[newer.index("--extra-index-url") + 1] == "https://idx"
    # no pip module: pip runs from its wheel
    wheel = tmp_path / "pip-25.0-py3-none-any.whl"
    from_wheel = installer.pip_command(facts(pip=None), "t", ["x"], "c", pip_wheel=wheel)
    assert from_wheel[:3] == [sys.executable, os.path.join(str(wheel), "pip"), "install"]
    assert from_wheel[from_wheel.index("--progress-bar") + 1] == "raw"


def test_tiers_keep_what_is_installed_and_refuse_unknown_names():
    assert installer.tier_union(["training"]) == ["training"]  # its modules include the maps tier's
    assert installer.tier_union(["maps"], installed=["training"]) == ["maps", "training"]
    reqs = installer.requirements_for(["maps", "training"])
    assert len(reqs) == len(set(reqs)) and deps.PACKAGES["torch"].requirement in reqs
    with pytest.raises(DependencyInstallError, match="Unknown tier"):
        installer.tier_union(["gpu"])


def test_torch_comes_from_the_cpu_index_on_linux_only(monkeypatch):
    monkeypatch.delenv(installer.TORCH_INDEX_ENV, raising=False)
    assert installer.default_torch_index("Linux", "x86_64") == installer.TORCH_CPU_INDEX
    assert installer.default_torch_index("Windows", "AMD64") is None
    assert installer.default_torch_index("Darwin", "arm64") is None
    monkeypatch.setenv(installer.TORCH_INDEX_ENV, "")
    assert installer.default_torch_index("Linux", "x86_64") is None


# --- progress ---------------------------------------------------------------------------------------------
PIP_OUTPUT = """\
Looking in indexes: https://pypi.org/simple
Collecting h3<5,>=4.1
  Downloading h3-4.5.0-cp311-cp311-manylinux_2_28_x86_64.whl (1.1 MB)
Progress 0 of 1100000
Progress 550000 of 1100000
Progress 1100000 of 1100000
Collecting pandas>=2.0
  Using cached pandas-2.3.3-cp311-cp311-manylinux_2_28_x86_64.whl (12.3 MB)
Collecting numpy>=1.23.2
Installing collected packages: numpy, h3, pandas
Successfully installed h3-4.5.0 numpy-1.24.2 pandas-2.3.3
"""


def test_progress_follows_pips_phases():
    progress = installer.PipProgress()
    seen = []
    for line in PIP_OUTPUT.splitlines():
        progress.feed(line)
        seen.append((progress.percent, progress.status))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 90.0
    statuses = [s for _, s in seen]
    assert "Resolving h3<5,>=4.1" in statuses
    assert "Downloading h3 4.5.0 (1.1 MB) (50%)" in statuses
    assert "Downloading pandas 2.3.3 (12.3 MB)" in statuses
    assert "Installing numpy, h3, pandas" in statuses


# --- cancellation -----------------------------------------------------------------------------------------
def test_cancel_stops_the_child_within_a_second(tmp_path):
    script = "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('never')"
    lines, t0 = [], time.monotonic()
    started = {}

    def cancelled():
        return bool(lines) and time.monotonic() - started.setdefault("t", time.monotonic()) > 0.3

    with open(tmp_path / "log.txt", "w") as log, pytest.raises(installer.Cancelled, match="nothing was installed"):
        installer.run_logged(
            [sys.executable, "-c", script],
            env=installer.child_env(),
            log=log,
            on_line=lines.append,
            cancelled=cancelled,
        )
    assert time.monotonic() - t0 < 5
    assert lines == ["started"]
    assert "[cancelled by the user]" in (tmp_path / "log.txt").read_text()


# --- after pip --------------------------------------------------------------------------------------------
def fake_dist(site: Path, name: str, version: str, files: dict[str, str]) -> Path:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows = []
    for rel, text in files.items():
        target = site / rel.replace("../../bin/", "bin/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        rows.append(f"{rel},sha256=x,{len(text)}")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return info


def test_prune_removes_exact_copies_of_qgis_packages_only(tmp_path):
    site = tmp_path / "site"
    fake_dist(
        site, "numpy", "1.24.2", {"numpy/__init__.py": "x", "numpy.libs/libopenblas.so": "x", "../../bin/f2py": "x"}
    )
    fake_dist(site, "pandas", "2.3.3", {"pandas/__init__.py": "x"})
    fake_dist(site, "python_dateutil", "2.9.0", {"dateutil/__init__.py": "x"})
    removed = installer.prune_duplicates(site, facts(dists={"numpy": "1.24.2", "python-dateutil": "2.8.2"}))
    assert removed == ["numpy==1.24.2"]
    assert not (site / "numpy").exists() and not (site / "numpy.libs").exists()
    assert not (site / "bin").exists() and not (site / "numpy-1.24.2.dist-info").exists()
    assert (site / "pandas" / "__init__.py").exists() and (site / "dateutil" / "__init__.py").exists()
    assert [d.name for d in installer.dists_in(site)] == ["pandas", "python_dateutil"]


def test_forbidden_distributions_are_found(tmp_path):
    site = tmp_path / "site"
    fake_dist(site, "PyQt5_sip", "12.13.0", {"PyQt5/sip.so": "x"})
    fake_dist(site, "h3", "4.5.0", {"h3/__init__.py": "x"})
    assert installer.forbidden_in(site) == ["PyQt5_sip==12.13.0"]


# --- folder state and activation --------------------------------------------------------------------------
def installed_folder(
    tmp_path: Path, site_name: str = "site-1", module: str = "mobclip_fake_pkg"
) -> installer.DepsFolder:
    folder = installer.DepsFolder(tmp_path / "deps", "py311-test")
    site = folder.path / site_name
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text("VALUE = 42\n")
    folder.write_state({"format": installer.STATE_FORMAT, "site": site_name, "tiers": ["maps"], "qgis_numpy": "1.24.2"})
    return folder


def test_activation_puts_the_site_first_and_children_see_it(tmp_path, clean_sys_path):
    folder = installed_folder(tmp_path)
    (folder.path / "site-0").mkdir()  # left by an earlier install
    (folder.path / "site-8.partial").mkdir()  # a crashed install, a day ago
    os.utime(folder.path / "site-8.partial", (time.time() - 86400, time.time() - 86400))
    (folder.path / "site-9.partial").mkdir()  # maybe running now in another QGIS window
    activation = folder.activate()
    assert activation.site == folder.path / "site-1" and not activation.restart_needed
    assert sys.path[0] == str(folder.path / "site-1")
    assert not (folder.path / "site-0").exists() and not (folder.path / "site-8.partial").exists()
    assert (folder.path / "site-9.partial").exists()
    env = deps.child_environment({"PATH": "/usr/bin"})
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert str(folder.path / "site-1") in entries
    assert Path(entries[0], "mobclip_core", "dependencies.py").exists()  # the library the plugin bundles
    out = subprocess.run(
        [sys.executable, "-c", "import mobclip_fake_pkg, mobclip_core.dependencies; print(mobclip_fake_pkg.VALUE)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "42", out.stderr


def test_switching_to_a_new_site_needs_a_restart_only_when_the_old_one_is_in_use(tmp_path, clean_sys_path):
    folder = installed_folder(tmp_path, "site-1", "mobclip_fake_a")
    folder.activate()
    # a new install, nothing imported from the old site yet: switch now
    (folder.path / "site-2" / "mobclip_fake_a").mkdir(parents=True)
    (folder.path / "site-2" / "mobclip_fake_a" / "__init__.py").write_text("VALUE = 2\n")
    folder.write_state({**folder.state(), "site": "site-2"})
    assert not folder.activate().restart_needed
    assert str(folder.path / "site-2") in sys.path and str(folder.path / "site-1") not in sys.path
    assert not (folder.path / "site-1").exists()
    import mobclip_fake_a

    assert mobclip_fake_a.VALUE == 2
    try:
        (folder.path / "site-3").mkdir()
        folder.write_state({**folder.state(), "site": "site-3"})
        activation = folder.activate()  # mobclip_fake_a is loaded from site-2: keep it until QGIS restarts
        assert activation.restart_needed and activation.site == folder.path / "site-2"
        assert (folder.path / "site-2").exists()
        assert folder.remove() is False  # still in use
        assert folder.state() is None and folder.installed_tiers() == []
    finally:
        sys.modules.pop("mobclip_fake_a", None)
    assert folder.remove() is True
    assert not (folder.path / "site-2").exists() and str(folder.path / "site-2") not in sys.path


def test_stale_when_qgis_numpy_changed(tmp_path):
    folder = installed_folder(tmp_path)
    assert folder.stale_reason("1.24.2") is None
    reason = folder.stale_reason("1.26.4")
    assert "1.24.2" in reason and "1.26.4" in reason and "Install dependencies" in reason


def test_python_candidates_find_qgis_python_on_each_platform(tmp_path):
    osgeo = tmp_path / "OSGeo4W"
    (osgeo / "bin").mkdir(parents=True)
    (osgeo / "apps" / "Python312").mkdir(parents=True)
    (osgeo / "apps" / "Python312" / "python.exe").write_text("")
    win = deps.python_candidates(str(osgeo / "bin" / "qgis-bin.exe"), "C:/nowhere", (3, 12), "Windows")
    assert osgeo / "apps" / "Python312" / "python.exe" in win
    app = tmp_path / "QGIS.app" / "Contents"
    framework = app / "Frameworks" / "Python.framework" / "Versions" / "3.11" / "bin"
    framework.mkdir(parents=True)
    (framework / "python3.11").write_text("")
    mac = deps.python_candidates(str(app / "MacOS" / "QGIS"), str(app / "MacOS"), (3, 11), "Darwin")
    assert mac[0] == app / "MacOS" / "bin" / "python3.11" and framework / "python3.11" in mac
    linux = deps.python_candidates("/usr/bin/qgis", "/usr", (3, 11), "Linux")
    assert linux[0] == Path("/usr/bin/python3.11")
    assert deps.python_candidates("/usr/bin/python3.11", "/usr", (3, 11), "Linux")[0] == Path("/usr/bin/python3.11")
    assert deps.find_python().is_file()


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for another Python")
def test_find_python_prefers_this_pythons_prefix_over_another_of_the_same_version(tmp_path):
    """qgis_process can report a pyenv or conda ``python3`` first on PATH as sys.executable: the install command
    the plugin prints must name QGIS's own Python, or the packages land in a folder QGIS never reads."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\necho {want}\necho /opt/pyenv/versions/other\n")
    shim.chmod(0o755)
    real = Path(sys.executable)
    assert deps._probe_python(shim) == (want, "/opt/pyenv/versions/other")
    assert deps.choose_python([shim, real], want, sys.prefix, deps._probe_python) == real
    assert deps.choose_python([shim], want, sys.prefix, deps._probe_python) == shim  # same version: the fallback
    assert deps.choose_python([shim], "2.7", sys.prefix, deps._probe_python) is None
    assert deps.choose_python([tmp_path / "missing"], want, sys.prefix, deps._probe_python) is None


def test_diagnostics_name_versions_folders_and_the_log(tmp_path):
    folder = installed_folder(tmp_path)
    folder.log_file.write_text("Collecting h3\nProgress 1 of 2\nERROR: something broke\n")
    text = installer.diagnostics(folder, qgis_version="3.22.16")
    assert "QGIS: 3.22.16" in text and sys.version.split()[0] in text
    assert str(folder.path) in text and "[Maps and regression]" in text and "[Training]" in text
    assert "ERROR: something broke" in text and "Progress 1 of 2" not in text


# --- a real pip run, offline: a local wheel into a temporary folder ------------------------------------------
def tiny_wheel(where: Path, name: str = "mobclip_probe_pkg", version: str = "1.0") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def offline_tier(tmp_path, monkeypatch):
    """The 'maps' tier replaced by one local wheel; pip may only look at that folder."""
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    tier = deps.Tier("maps", "Maps and regression", ("mobclip_probe_pkg",), "test")
    monkeypatch.setitem(deps.TIERS, "maps", tier)
    monkeypatch.setitem(deps.PACKAGES, "mobclip_probe_pkg", deps.Package("mobclip_probe_pkg", "mobclip_probe_pkg", "x"))
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the machine's pip.conf names indexes and constraints
    return wheels


def test_install_runs_pip_into_a_fresh_site_and_records_it(tmp_path, offline_tier, clean_sys_path):
    folder = installer.DepsFolder(tmp_path / "deps", "py311-test")
    steps, lines = [], []
    result = installer.install(
        ["maps"], folder, python=sys.executable, on_line=lines.append, on_progress=lambda p, s: steps.append((p, s))
    )
    assert result.site.parent == folder.path and result.site.name.startswith("site-")
    assert (result.site / "mobclip_probe_pkg" / "__init__.py").exists()
    assert result.packages == {"mobclip_probe_pkg": "1.0"} and result.tiers == ["maps"]
    state = folder.state()
    assert state["site"] == result.site.name and state["tiers"] == ["maps"]
    assert state["python"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert any("Successfully installed mobclip_probe_pkg-1.0" in ln for ln in lines)
    assert steps[-1] == (100.0, "Installed") and [p for p, _ in steps] == sorted(p for p, _ in steps)
    log = folder.log_file.read_text()
    assert "--only-binary :all:" in log and "PyQt5<0" in (folder.path / "constraints.txt").read_text()
    assert not list(folder.path.glob("*.partial"))
    assert folder.activate().site == result.site
    import mobclip_probe_pkg

    assert mobclip_probe_pkg.VERSION == "1.0"
    sys.modules.pop("mobclip_probe_pkg", None)


def test_failed_or_cancelled_install_leaves_the_previous_state(tmp_path, offline_tier, clean_sys_path, monkeypatch):
    folder = installer.DepsFolder(tmp_path / "deps", "py311-test")
    first = installer.install(["maps"], folder, python=sys.executable)
    before = folder.state()
    monkeypatch.setitem(
        deps.PACKAGES, "mobclip_probe_pkg", deps.Package("mobclip_probe_pkg", "mobclip_probe_pkg>=9", "x")
    )
    with pytest.raises(DependencyInstallError, match=r"pip failed .*mobclip_probe_pkg>=9") as err:
        installer.install(["maps"], folder, python=sys.executable)
    assert str(folder.log_file) in str(err.value)
    assert folder.state() == before and folder.active_site() == first.site
    assert not list(folder.path.glob("*.partial"))
    with pytest.raises(installer.Cancelled):
        installer.install(["maps"], folder, python=sys.executable, cancelled=lambda: True)
    assert folder.state() == before and not list(folder.path.glob("*.partial"))


def test_headless_command_line(tmp_path, offline_tier, clean_sys_path, capsys):
    assert installer.main(["maps", "--root", str(tmp_path / "deps")]) == 0
    out = capsys.readouterr().out
    assert "installed maps into" in out and "[100%] Installed" in out
    state = json.loads(next((tmp_path / "deps").glob("py*/state.json")).read_text())
    assert state["tiers"] == ["maps"]
    # run as a file with QGIS's python, it finds the mobclip_core bundled beside it
    script = subprocess.run(
        [sys.executable, "-I", installer.__file__, "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert script.returncode == 0 and "--profile" in script.stdout, script.stderr


def test_the_installer_module_imports_no_qgis():
    code = textwrap.dedent(
        """
        import sys
        import qgis_plugin.installer
        bad = [m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'numpy')]
        print(bad)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_pip_runs_from_its_wheel_when_qgis_python_has_no_pip(tmp_path, offline_tier, clean_sys_path, monkeypatch):
    """Debian's QGIS Python has no pip module unless python3-pip is installed; the wheel python3-venv ships works."""
    wheels = sorted(Path("/usr/share/python-wheels").glob("pip-*.whl"))
    if not wheels:
        pytest.skip("no pip wheel shipped with this Python (Debian: python3-pip-whl)")
    real_probe = installer.probe

    def probe_without_pip(python):
        found = real_probe(python)
        found.pip, found.pip_wheels = None, [str(wheels[-1])]
        return found

    monkeypatch.setattr(installer, "probe", probe_without_pip)
    folder = installer.DepsFolder(tmp_path / "deps", "py311-test")
    result = installer.install(["maps"], folder, python=sys.executable)
    assert (result.site / "mobclip_probe_pkg").is_dir()
    log = folder.log_file.read_text()
    assert f"running pip from {wheels[-1]}" in log and f"$ {sys.executable} {wheels[-1]}/pip install" in log


# --- the dialog, in real QGIS (offscreen) -------------------------------------------------------------------
@pytest.mark.qgis
def test_check_again_shows_what_changed_since_the_dialog_opened(tmp_path, offline_tier, clean_sys_path):
    """Packages installed while the dialog is open (the command line, another QGIS window), then removed: the
    dialog shows the old state until "Check again" is clicked, then the new one."""
    from qgis_support import start_qgis

    start_qgis()
    from qgis.PyQt.QtCore import Qt

    from qgis_plugin.installer_dialog import InstallerDialog

    folder = installer.DepsFolder(tmp_path / "deps", "py311-test")
    changes = []

    def packages_changed() -> bool:  # what the plugin does: use the folder's packages now
        changes.append(True)
        return folder.activate().restart_needed

    def probe_row() -> list[str]:
        (item,) = dialog.tree.findItems("mobclip_probe_pkg", Qt.MatchExactly | Qt.MatchRecursive, 0)
        return [item.text(1), item.text(2)]

    dialog = InstallerDialog(folder, on_change=packages_changed)
    try:
        assert dialog.tier_state["maps"].text() == "not installed (1 of 1 packages missing)"
        assert probe_row() == ["–", "missing"] and not dialog.remove_button.isEnabled()
        installer.install(["maps"], folder, python=sys.executable)  # outside the dialog
        assert dialog.tier_state["maps"].text().startswith("not installed")  # the dialog does not poll

        dialog.check_button.click()
        assert changes == [True] and dialog.status.text() == "Checked."
        assert dialog.tier_state["maps"].text() == "✔ ready (installed here)"
        assert probe_row() == ["1.0", "MobCLIP packages folder"] and dialog.remove_button.isEnabled()

        assert folder.remove()  # outside the dialog again
        assert dialog.tier_state["maps"].text() == "✔ ready (installed here)"
        dialog.check_button.click()
        assert changes == [True, True]
        assert dialog.tier_state["maps"].text() == "not installed (1 of 1 packages missing)"
        assert probe_row() == ["–", "missing"] and not dialog.remove_button.isEnabled()
    finally:
        dialog.close()
        dialog.deleteLater()
