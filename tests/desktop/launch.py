# Started by QGIS with ``qgis --code launch.py`` (QGIS exec()s this text: no __file__); see driver.py.
import json
import os
import sys

with open(os.environ["MOBCLIP_DESKTOP_SPEC"], encoding="utf-8") as spec:
    sys.path.insert(0, json.load(spec)["driver_dir"])
import driver  # noqa: E402

driver.main()
