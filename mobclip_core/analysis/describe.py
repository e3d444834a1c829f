"""What distinguishes each zone, in the terms of the inputs that built the embedding, and a label a reader gets.

From the region dataset (``RegionDataset``: the features each modality gave each cell, and the mobility graph) and,
optionally, the POIs themselves (a table with lon, lat and a category), each zone gets a profile: its most
over-represented POI categories (or how many of its cells have POIs at all), the mean age of its people against
the region's, how busy its cells are on the mobility graph, and how far its mean sits from the region's mean on
each modality. The label keeps the traits that stand out: "Zone 3: many supermarkets, young, busy".
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from .zones import NO_ZONE, Zones

# an age bin's column: optional "demo_", sex and "age" prefixes, the bin's first age, optionally its last age or
# "plus": demo_f_20 (WorldPop), demo_age_5_17, age_65, 85plus, m_15-19
_AGE_COLUMN = re.compile(
    r"^(?:demo_)?(?:(?:f|m|female|male)_)?(?:age_?)?(?P<lo>\d+)(?:(?:_|-|_to_)(?P<hi>\d+)|_?plus|\+)?$", re.IGNORECASE
)
OPEN_BIN_YEARS = 10  # the assumed width of a last, open-ended age bin ("65 and over")
MANY_LIFT = 1.5  # a POI category counts as "many" at 1.5x the region's number per place (or share of POIs)
BUSY, QUIET = 0.65, 0.35  # a zone's mean percentile of flow per cell among the region's cells
AGE_GAP = 3.0  # years from the region's mean age for "young" / "older"


def plural(word: str) -> str:
    """English plural of a category's last word ("university building" -> "university buildings")."""
    head, _, last = word.rpartition(" ")
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es" if not last.endswith("s") else ""
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    elif last:
        last += "s"
    return f"{head} {last}".strip()


def poi_category_shares(pois: pd.DataFrame, cells: pd.Index, resolution: int, category: str = "category"):
    """POIs per category in each cell (counts) from a table with ``lon``, ``lat`` and ``category`` columns."""
    from ..grid import cells_to_strings, points_to_cells

    missing = {"lon", "lat", category} - set(pois.columns)
    if missing:
        raise InvalidInputError(
            f"the POI table needs columns lon, lat and {category!r}; it lacks {sorted(missing)}: name the category "
            "column, or give POIs as points with that field"
        )
    lon, lat = pois["lon"].to_numpy(np.float64), pois["lat"].to_numpy(np.float64)
    ok = np.isfinite(lon) & np.isfinite(lat) & pois[category].notna().to_numpy()
    ids = cells_to_strings(points_to_cells(lon[ok], lat[ok], resolution))
    counts = pd.crosstab(pd.Series(ids, name=REGION_INDEX), pois[category].to_numpy()[ok].astype(str))
    return counts.reindex(cells, fill_value=0)


def _mean_age(demo: pd.DataFrame) -> pd.Series | None:
    """Mean age per cell from age-bin shares, None if the columns are not age bins.

    A bin's age is its middle: from its first and last age where the name gives both (``demo_age_5_17``: 11.5), else
    halfway to the next bin's first age (``demo_f_20`` before ``demo_f_25``: 22.5); the last, open bin counts
    ``OPEN_BIN_YEARS`` wide. Sex-split bins of the same ages (f_20, m_20) share the middle.
    """
    bins = {c: m for c in demo.columns if (m := _AGE_COLUMN.match(str(c)))}
    starts = sorted({int(m.group("lo")) for m in bins.values()})
    if len(starts) < 3:
        return None
    following = dict(zip(starts, starts[1:]))
    mid = {}
    for c, m in bins.items():
        lo = int(m.group("lo"))
        if m.group("hi") is not None:
            mid[c] = (lo + int(m.group("hi")) + 1) / 2
        else:
            mid[c] = lo + (following.get(lo, lo + OPEN_BIN_YEARS) - lo) / 2
    cols = list(mid)
    w = demo[cols].to_numpy(np.float64)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        age = (w @ np.array([mid[c] for c in cols])) / total
    return pd.Series(np.where(total > 0, age, np.nan), index=demo.index)


def describe_zones(
    zones: Zones,
    cells: pd.Index,
    *,
    dataset=None,
    pois: pd.DataFrame | None = None,
    poi_category: str = "category",
    resolution: int | None = None,
) -> Zones:
    """Fill ``zones.profiles`` (one row per zone) and ``zones.names`` from the region dataset and/or a POI table.

    ``cells`` are the hex ids of the rows ``zones.labels`` refers to. Without a dataset or POIs the names are
    "Zone i (n places)".
    """
    cells = pd.Index(np.asarray(cells, dtype=str), name=REGION_INDEX)
    labels = pd.Series(zones.labels, index=cells)
    in_zone = labels[labels != NO_ZONE]
    ids = list(range(1, zones.k + 1))
    prof = pd.DataFrame(index=pd.Index(ids, name="zone"))
    prof["places"] = in_zone.value_counts().reindex(ids, fill_value=0)
    prof["share"] = prof["places"] / max(len(in_zone), 1)
    traits: dict[int, list[str]] = {z: [] for z in ids}
    feats = dict(getattr(dataset, "features", {}) or {})
    if pois is not None:
        res = resolution if resolution is not None else _resolution(cells)
        counts = poi_category_shares(pois, cells, res, poi_category)
        _poi_traits(counts, in_zone, ids, prof, traits)
    elif "poi" in feats and any(str(c).startswith("cat_") for c in feats["poi"].columns):
        shares = feats["poi"].filter(like="cat_").rename(columns=lambda c: str(c)[4:])
        _poi_traits(shares.reindex(cells).fillna(0.0), in_zone, ids, prof, traits)
    elif "poi" in feats:  # text embeddings of POIs say nothing readable; whether cells have POIs does
        _poi_presence_traits(feats["poi"].reindex(cells), in_zone, ids, prof, traits)
    if "demographics" in feats:
        _age_traits(feats["demographics"].reindex(cells), in_zone, ids, prof, traits)
    graph = getattr(dataset, "graph", None)
    if graph is not None:
        _flow_traits(graph, in_zone, ids, prof, traits)
    _distinctness(feats, in_zone, ids, prof)
    names = _zone_names(traits, prof, described=dataset is not None or pois is not None)
    prof.insert(0, "label", pd.Series(names))
    zones.names = names
    zones.profiles = prof
    return zones


def _zone_mean(series: pd.Series, in_zone: pd.Series, ids: list[int]) -> pd.Series:
    """The mean of a per-cell value over each zone's cells, one row per zone id."""
    s = series.reindex(in_zone.index)
    return s.groupby(in_zone).mean().reindex(ids)


def _poi_presence_traits(
    poi: pd.DataFrame, in_zone: pd.Series, ids: list[int], prof: pd.DataFrame, traits: dict[int, list[str]]
) -> None:
    """Traits "many POIs" / "few POIs" from how many of a zone's cells have any (text POI features are unreadable)."""
    has = poi.notna().all(axis=1).astype(float)
    share = _zone_mean(has, in_zone, ids)
    prof["cells_with_pois"] = share
    overall = float(has.reindex(in_zone.index).mean())
    for z in ids:
        if overall > 0 and share[z] >= min(1.0, 1.3 * overall) and share[z] > 0.5:
            traits[z].append("many POIs")
        elif share[z] <= 0.5 * overall:
            traits[z].append("few POIs")


def _age_traits(
    demo: pd.DataFrame, in_zone: pd.Series, ids: list[int], prof: pd.DataFrame, traits: dict[int, list[str]]
) -> None:
    """Traits "young" / "older" where a zone's mean age is ``AGE_GAP`` years off the region's (needs age bins)."""
    age = _mean_age(demo)
    if age is None:
        return
    prof["mean_age"] = _zone_mean(age, in_zone, ids)
    overall = float(age.reindex(in_zone.index).mean())
    for z in ids:
        gap = prof.at[z, "mean_age"] - overall
        if gap <= -AGE_GAP:
            traits[z].append("young")
        elif gap >= AGE_GAP:
            traits[z].append("older")


def _flow_traits(graph, in_zone: pd.Series, ids: list[int], prof: pd.DataFrame, traits: dict[int, list[str]]) -> None:
    """Traits "busy" / "quiet" from where a zone's cells rank by mobility flow among the region's cells.

    Ranks, not the mean flow: flows are heavy-tailed (a city centre carries many times a suburb's), so against the
    region's mean nearly every zone would be "quiet". ``flow_vs_region`` (mean flow per cell against the region's)
    stays in the profile for the size of the difference.
    """
    from ..grid import cells_to_strings

    flow = pd.Series(graph.strength(), index=cells_to_strings(graph.cells)).reindex(in_zone.index).fillna(0.0)
    zone_flow = _zone_mean(flow, in_zone, ids)
    overall = float(flow.mean())
    prof["flow_vs_region"] = zone_flow / overall if overall > 0 else np.nan
    # a cell without flow ranks 0, not in the middle of its ties: where most cells carry none, they are "quiet"
    percentile = flow.rank(pct=True).where(flow > 0, 0.0)
    prof["flow_percentile"] = _zone_mean(percentile, in_zone, ids)
    prof["links_per_place"] = _zone_mean(
        pd.Series(graph.degree(), index=cells_to_strings(graph.cells)).astype(float), in_zone, ids
    )
    if overall <= 0:
        return
    for z in ids:
        rank = prof.at[z, "flow_percentile"]
        if rank >= BUSY:
            traits[z].append("busy")
        elif rank <= QUIET:
            traits[z].append("quiet")


def _distinctness(feats: dict[str, pd.DataFrame], in_zone: pd.Series, ids: list[int], prof: pd.DataFrame) -> None:
    """How far each zone's mean is from the region's, per modality (mean absolute z-score)."""
    for name, table in feats.items():
        x = table.reindex(in_zone.index)
        present = x.notna().all(axis=1)
        if not present.any():
            continue
        x = x[present]
        std = x.std(ddof=0).replace(0, np.nan)
        z_means = (x.groupby(in_zone[present]).mean() - x.mean()) / std
        prof[f"{name}_distinctness"] = z_means.abs().mean(axis=1).reindex(ids)


def _zone_names(traits: dict[int, list[str]], prof: pd.DataFrame, *, described: bool) -> dict[int, str]:
    """Each zone's label from its traits; "Zone i (n places)" when there was nothing to describe it with. Zones
    whose traits read alike get their numbers appended, so that no two legend entries say the same."""
    names, words_of = {}, {}
    for z in traits:
        words = traits[z]
        if not words and described:
            words = ["like the region overall"]
        words_of[z] = ", ".join(words)
        names[z] = f"Zone {z}: {words_of[z]}" if words else f"Zone {z} ({prof.at[z, 'places']} places)"
    alike = pd.Series(words_of)
    for words, group in alike[alike.duplicated(keep=False) & (alike != "")].groupby(alike):
        for z, number in _telling_numbers(prof, list(group.index), str(words)).items():
            names[z] += f" ({number})"
    return names


def _telling_numbers(prof: pd.DataFrame, zones: list[int], words: str) -> dict[int, str]:
    """One measured value per zone that tells apart ``zones``, whose traits read ``words`` alike: the measure behind
    the shared traits first (flow for "busy", age for "young"...), else the first that differs, else the size."""
    measures = {
        "flow": ("flow_percentile", lambda v: f"flow percentile {100 * v:.0f}", ("busy", "quiet")),
        "age": ("mean_age", lambda v: f"mean age {v:.0f}", ("young", "older")),
        "pois": ("cells_with_pois", lambda v: f"{100 * v:.0f}% with POIs", ("POIs",)),
    }
    behind = [m for m, (_, _, traits) in measures.items() if any(t in words for t in traits)]
    for m in [*behind, *(m for m in measures if m not in behind)]:
        column, text, _ = measures[m]
        if column in prof and prof.loc[zones, column].notna().all():
            shown = {z: text(prof.at[z, column]) for z in zones}
            if len(set(shown.values())) == len(zones):
                return shown
    return {z: f"{prof.at[z, 'places']} places" for z in zones}


def _poi_traits(counts: pd.DataFrame, in_zone: pd.Series, ids, prof: pd.DataFrame, traits) -> None:
    """ "Many X" for the (at most two) categories a zone has more of than the region: at least the region's number
    per place, and 1.5x that number or 1.5x the region's share of its POIs; ranked by number per place. The share
    alone would call a zone with two supermarkets and one liquor store in 360 cells "many supermarkets"."""
    c = counts.reindex(in_zone.index).fillna(0.0)
    per_zone = c.groupby(in_zone).sum().reindex(ids, fill_value=0.0)
    region = c.sum()
    if region.sum() <= 0:
        return
    region_share = region / region.sum()
    totals = per_zone.sum(axis=1)
    prof["pois"] = totals if not np.allclose(totals, totals.round()) else totals.round().astype(int)
    top = []
    for z in ids:
        if totals[z] <= 0:
            top.append("")
            traits[z].append("no POIs")
            continue
        share_lift = (per_zone.loc[z] / totals[z]) / region_share.replace(0, np.nan)
        density_lift = (per_zone.loc[z] / max(prof.at[z, "places"], 1)) / (region / max(len(c), 1)).replace(0, np.nan)
        many = (density_lift >= 1.0) & ((density_lift >= MANY_LIFT) | (share_lift >= MANY_LIFT))
        lifted = density_lift[many].sort_values(ascending=False).head(2)
        top.append(", ".join(lifted.index))
        if len(lifted):
            traits[z].append("many " + " and ".join(plural(str(c)) for c in lifted.index))
    prof["top_poi_categories"] = top


def _resolution(cells: pd.Index) -> int:
    from ..grid import cell_resolution, strings_to_cells

    return int(cell_resolution(strings_to_cells(cells[:1].to_numpy()))[0])


def table_zones(
    table: pd.DataFrame,
    *,
    dataset=None,
    pois: pd.DataFrame | None = None,
    poi_category: str = "category",
    **options,
) -> Zones:
    """Zones of an embedding table (``functional_zones`` with ``options``), described from the region dataset (a
    ``RegionDataset`` or its folder) and/or a POI table. The call behind ``mobclip zones`` and QGIS's algorithm."""
    from ..dataset import RegionDataset
    from .zones import functional_zones

    if dataset is not None and not isinstance(dataset, RegionDataset):
        dataset = RegionDataset.load(dataset)
    zones = functional_zones(table.to_numpy(np.float32), **options)
    return describe_zones(zones, table.index, dataset=dataset, pois=pois, poi_category=poi_category)
