"""Zone (census unit) ids as keys: the same zone must match whether its id was read as text, integer or float."""

from __future__ import annotations

import numpy as np
import pandas as pd


def normalise_zone_ids(ids) -> np.ndarray:
    """Zone ids as comparable strings: 17031010100, 17031010100.0, "17031010100" and " 017031010100" agree.

    Integral floats lose their ``.0`` (a GEOID stored as a real in a GeoPackage), surrounding blanks go, and
    all-digit ids lose leading zeros, so a code read as text ("06075") matches the same code read as an
    integer (6075). Other ids (letters, dashes) are kept as written.
    """
    values = ids.to_numpy(dtype=object) if isinstance(ids, pd.Series | pd.Index) else np.asarray(ids, dtype=object)
    text = pd.Series(
        [str(int(v)) if isinstance(v, float) and np.isfinite(v) and v == int(v) else str(v) for v in values],
        dtype=object,
    ).str.strip()
    digits = text.str.fullmatch(r"\d+")
    text = text.where(~digits, text.str.lstrip("0").replace("", "0"))
    return text.to_numpy(dtype=object)
