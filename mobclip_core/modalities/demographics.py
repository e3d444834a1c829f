"""Demographics modality: age/sex rasters (e.g. WorldPop) or zone tables -> normalised histogram per cell."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from ..grid import cells_to_strings, raster_to_cells
from .base import BuildContext, FeatureModality
from .cache import cached, fingerprint


def _normalise(counts: pd.DataFrame) -> pd.DataFrame:
    total = counts.sum(axis=1)
    hist = counts[total > 0].div(total[total > 0], axis=0)
    hist.columns = [f"demo_{c}" for c in counts.columns]
    return hist.astype(np.float32)


def demographics_from_rasters(
    rasters: dict[str, str | Path] | str | Path, resolution: int, *, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """Per-cell histogram over age/sex bins from counts rasters.

    ``rasters`` is one multi-band raster (one band per bin, band descriptions as bin names) or a mapping
    bin name -> single-band raster (the WorldPop layout, e.g. ``{"f_0": "xxx_f_0_2020.tif", ...}``). Pixels are
    summed into cells (totals preserved), then each cell's counts are divided by its total. Cells with no people
    are left out.
    """
    if isinstance(rasters, str | Path):
        path = Path(rasters)
        key = fingerprint("demo", resolution, path)
        return cached(
            cache_dir,
            "demographics",
            key,
            lambda: _normalise(raster_to_cells(path, resolution, statistic="sum").drop(columns="pixel_count")),
        )
    if not rasters:
        raise InvalidInputError("no demographic rasters given")
    paths = {k: Path(v) for k, v in rasters.items()}
    key = fingerprint("demo", resolution, sorted(paths), *paths.values())

    def compute() -> pd.DataFrame:
        cols = [raster_to_cells(p, resolution, statistic="sum", band_names=[name])[[name]] for name, p in paths.items()]
        return _normalise(pd.concat(cols, axis=1).fillna(0.0))

    return cached(cache_dir, "demographics", key, compute)


_WORLDPOP_NAME = re.compile(
    r"^(?P<iso>[a-z]{3})_(?P<sex>[fm])_(?P<age>\d{1,2})_(?P<year>\d{4})(?P<variant>_[a-z0-9_]+)?\.tiff?$", re.IGNORECASE
)


def worldpop_rasters(folder: str | Path) -> dict[str, Path]:
    """WorldPop age/sex rasters in a folder by their published names -> {"f_0": path, "f_1": ..., "m_80": ...}.

    WorldPop names each sex x age-band file ``<iso>_<sex>_<age>_<year>[_<variant>].tif`` (e.g.
    ``fin_f_0_2020.tif``, ``ken_m_65_2020_constrained.tif``); bins are ordered by sex, then by age. The folder
    must hold one country, one year and one variant: anything else is ambiguous and refused.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"[demographics] worldpop = {folder}: not a folder of WorldPop age/sex rasters")
    found = {}
    for f in sorted(folder.iterdir()):
        m = _WORLDPOP_NAME.match(f.name)
        if m:
            found[f] = (m["iso"].lower(), m["year"], (m["variant"] or "").lower(), m["sex"].lower(), int(m["age"]))
    if not found:
        raise InvalidInputError(
            f"no WorldPop age/sex raster in {folder}: files are named like fin_f_0_2020.tif or "
            "ken_m_65_2020_constrained.tif (country, sex f/m, age band, year)"
        )
    groups = {v[:3] for v in found.values()}
    if len(groups) > 1:
        listed = ", ".join(f"{iso} {year}{variant}" for iso, year, variant in sorted(groups))
        raise InvalidInputError(f"{folder} mixes WorldPop sets ({listed}): keep one country, year and variant")
    bins = {f"{sex}_{age}": f for f, (*_, sex, age) in sorted(found.items(), key=lambda kv: kv[1][3:])}
    return bins


def demographics_from_table(
    table: pd.DataFrame, *, zone_cells: pd.DataFrame | None = None, zone: str = "zone"
) -> pd.DataFrame:
    """Per-cell histogram from a table of counts per bin, keyed by ``h3_cell`` or by zone.

    With ``zone_cells`` (from ``zones_to_cells``) a zone's histogram is given to each of its cells. Zone ids are
    matched as normalised strings (``sources.zones.normalise_zone_ids``), so an integer GEOID in one table
    matches the same code as text in the other; the zone column is never taken for a bin.
    """
    from ..sources.zones import normalise_zone_ids

    counts = table.drop(columns=[zone], errors="ignore").select_dtypes("number")
    if counts.empty:
        raise InvalidInputError("the demographics table has no numeric bin columns")
    if zone_cells is None:
        if table.index.name != REGION_INDEX:
            raise InvalidInputError(f"index the table by '{REGION_INDEX}' or pass zone_cells to spread zones to cells")
        return _normalise(counts)
    keys = normalise_zone_ids(table[zone] if zone in table.columns else table.index)
    hist = _normalise(counts.set_axis(pd.Index(keys, name="zone")))
    if not hist.index.is_unique:
        dup = hist.index[hist.index.duplicated()][0]
        raise InvalidInputError(f"zone {dup!r} appears more than once in the demographics table; give one row per zone")
    zone_cells = zone_cells.assign(zone=normalise_zone_ids(zone_cells["zone"]))
    joined = zone_cells.join(hist, on="zone", how="inner")
    if joined.empty:
        raise InvalidInputError(
            f"no zone id of the demographics table (e.g. {list(hist.index[:3])}) matches the zone layer "
            f"(e.g. {list(zone_cells['zone'].unique()[:3])}): check the zone_id column"
        )
    joined[REGION_INDEX] = cells_to_strings(joined[REGION_INDEX].to_numpy(np.uint64))
    return joined.drop(columns=["zone", "weight"]).groupby(REGION_INDEX).mean()


def demographics_from_zone_table(section, resolution: int, resolve) -> pd.DataFrame:
    """``[demographics] table``: counts per zone (a zone layer, or a CSV/Parquet with a separate zone layer)."""
    from ..sources import read_layer
    from .mobility.od import zones_to_cells

    path = resolve(section.table)
    if path.suffix.lower() in (".csv", ".parquet"):
        if not section.zones:
            raise InvalidInputError(
                "[demographics] a CSV/Parquet table needs 'zones' (a polygon layer with the zone id column)"
            )
        ids_as_text = {section.zone_id: str}  # keep leading zeros of zone codes
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=ids_as_text)
        zones = read_layer(resolve(section.zones))
    else:
        zones = read_layer(path)
        table = pd.DataFrame(zones.drop(columns=zones.geometry.name))
    for col in [section.zone_id, *section.columns]:
        if col not in table.columns:
            raise InvalidInputError(f"[demographics] table has no column {col!r}; it has {list(table.columns)}")
    bins = section.columns or [c for c in table.select_dtypes("number").columns if c != section.zone_id]
    counts = table[[section.zone_id, *bins]]
    zone_cells = zones_to_cells(zones, resolution, zone_id=section.zone_id)
    return demographics_from_table(counts.rename(columns={section.zone_id: "zone"}), zone_cells=zone_cells)


class DemographicsModality(FeatureModality):
    """``[demographics]``: age/sex counts (rasters or zone tables) -> normalised histogram per cell."""

    name = "demographics"

    def configured(self, section) -> bool:
        return bool(section.raster or section.rasters or section.table or section.worldpop)

    def describe(self, section) -> str:
        if section.worldpop:
            return f"demographics: age/sex histograms from the WorldPop rasters in {section.worldpop}"
        if section.raster or section.rasters:
            return "demographics: age/sex histograms from rasters"
        return f"demographics: histograms from zone table {section.table}"

    def build(self, section, cells: np.ndarray, ctx: BuildContext) -> pd.DataFrame:
        if section.worldpop:
            return demographics_from_rasters(
                worldpop_rasters(ctx.resolve(section.worldpop)), ctx.resolution, cache_dir=ctx.cache_dir
            )
        if section.raster or section.rasters:
            src = (
                ctx.resolve(section.raster)
                if section.raster
                else {k: ctx.resolve(v) for k, v in section.rasters.items()}
            )
            return demographics_from_rasters(src, ctx.resolution, cache_dir=ctx.cache_dir)
        paths = [ctx.resolve(p) for p in (section.table, section.zones) if p]
        key = fingerprint("demo_table", ctx.resolution, section.zone_id, list(section.columns), *paths)
        return cached(
            ctx.cache_dir,
            "demographics_table",
            key,
            lambda: demographics_from_zone_table(section, ctx.resolution, ctx.resolve),
        )
