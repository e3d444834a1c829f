# Started by QGIS with ``qgis --code launch.py`` (QGIS exec()s this text: no __file__); see driver.py.
import json
import os
import sys

sys.path.insert(0, json.load(open(os.environ["MOBCLIP_DESKTOP_SPEC"], encoding="utf-8"))["driver_dir"])
import driver  # noqa: E402

driver.main()
