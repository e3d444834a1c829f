"""Prepare the real Chicago data in ../shared/data/chicago as MobCLIP inputs and a config.

Mobility: taxi trips between 2010 census tracts (Apr 2013 - Mar 2014), spread from tracts to H3 cells by area.
POIs: supermarkets (with names) and liquor stores (category only). Demographics inputs: tract age structure as
counts (the paper's age/sex structure; the tracts carry no sex breakdown). Race/ethnicity counts are a separate,
labelled variant (``demographics="age+race"``): a sensitive input a user should choose knowingly.
Downstream targets (never inputs): ``TARGETS`` (reported by bench_chicago) and ``DEV_TARGETS`` (used only to choose
defaults, by chicago_search). The data are read from the shared folder, never copied here.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

SHARED = Path(os.environ.get("MOBCLIP_CHICAGO", Path(__file__).resolve().parents[2] / "shared/data/chicago"))
TARGETS = {
    "PDENS14": "population density",
    "EP_NOHSDP": "% without high-school diploma",
    "EP_PCI": "per-capita income",
    "Pov14": "% in poverty",
    "Unemp14": "% unemployed",
    "EP_MUNIT": "% multi-unit housing",
    "EP_CROWD": "% crowded housing",
    "PCRIMERT15": "property crime rate",
    "VCRIMERT15": "violent crime rate",
    "ForclRt": "foreclosure rate",
}
DEV_TARGETS = {
    "ChldPvt14": "% children in poverty",
    "EP_UNINSUR": "% uninsured",
    "EP_LIMENG": "% limited English",
    "EP_SNGPNT": "% single-parent households",
    "EP_NOVEH": "% households without a vehicle",
    "CTA14P": "% commuting by transit",
    "CarC14P": "% commuting by car",
    "CmTm14": "mean commute time",
    "EP_DISABL": "% with a disability",
    "HealthLit": "health literacy",
}
AGE_COLUMNS = ["age_0_4", "age_5_17", "age_18_64", "age_65"]
RACE_COLUMNS = ["white", "black", "hispanic", "other"]
DEMOGRAPHIC_INPUTS = {"age": AGE_COLUMNS, "age+race": AGE_COLUMNS + RACE_COLUMNS}

CONFIG = """\
# MobCLIP on real Chicago data (benchmarks/chicago_data.py). Paths relative to this file.
name = "chicago"
resolution = {resolution}
output = "{output}"
cache_dir = "cache"

[mobility]
od = "taxi_od.csv"
zones = "tracts.gpkg"
zone_id = "tract"
ratio = 0.3

[poi]
path = "pois.gpkg"

[demographics]                # {demographics}
table = "tracts.gpkg"
zone_id = "tract"
columns = {columns}

[line]
samples_per_edge = 50

[train]
batch_size = 1024
epochs = 100
patience = 10
"""


def available() -> bool:
    return (SHARED / "taxi-all.matrix").exists()


def load_tracts() -> gpd.GeoDataFrame:
    tracts = gpd.read_file(f"zip://{SHARED / 'Chi-SDOH.zip'}!Chi-SDOH.shp")
    tracts["tract"] = tracts["TRACTCE10"].astype(int).map("{:06d}".format)
    pop = tracts["Pop2014"].clip(lower=0)
    under5, under18, over65 = (tracts[c].clip(0, 100) / 100 for c in ("Undr514P", "EP_AGE17", "Ovr6514P"))
    tracts["age_0_4"] = pop * under5
    tracts["age_5_17"] = pop * (under18 - under5).clip(lower=0)
    tracts["age_18_64"] = pop * (1 - under18 - over65).clip(lower=0)
    tracts["age_65"] = pop * over65
    white, black, hisp = (tracts[c].clip(0, 100) / 100 for c in ("Wht14P", "Blk14P", "Hisp14P"))
    tracts["white"], tracts["black"], tracts["hispanic"] = pop * white, pop * black, pop * hisp
    tracts["other"] = pop * (1 - white - black - hisp).clip(lower=0)
    return tracts[["tract", "commarea", *AGE_COLUMNS, *RACE_COLUMNS, *TARGETS, *DEV_TARGETS, "geometry"]]


def taxi_od() -> pd.DataFrame:
    matrix = np.loadtxt(SHARED / "taxi-all.matrix", delimiter=",")
    ids = pd.read_csv(SHARED / "taxi_matrix_tracts.csv", dtype={"tractce10": str})["tractce10"].to_numpy()
    o, d = np.nonzero(matrix)
    return pd.DataFrame({"origin": ids[o], "destination": ids[d], "flow": matrix[o, d]})


def pois() -> gpd.GeoDataFrame:
    sup = gpd.read_file(SHARED / "chicago_sup.geojson")
    liq = gpd.read_file(SHARED / "liq_chicago.geojson")
    a = gpd.GeoDataFrame(
        {"name": sup["Field5"].fillna("").str.title(), "category": "supermarket"}, geometry=sup.geometry, crs=sup.crs
    )
    b = gpd.GeoDataFrame({"name": [""] * len(liq), "category": "liquor store"}, geometry=liq.geometry, crs=liq.crs)
    return pd.concat([a, b], ignore_index=True)


def prepare_chicago(out_dir: str | Path, resolution: int = 9, demographics: str = "age") -> Path:
    """Write tracts.gpkg, taxi_od.csv, pois.gpkg and mobclip.toml into ``out_dir``; returns the config path.

    ``demographics`` names the demographic input: "age" (default) or "age+race" (see the module docstring).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_tracts().to_file(out / "tracts.gpkg", driver="GPKG")
    taxi_od().to_csv(out / "taxi_od.csv", index=False)
    pois().to_file(out / "pois.gpkg", driver="GPKG")
    cfg = out / ("mobclip.toml" if demographics == "age" else f"mobclip-{demographics.replace('+', '-')}.toml")
    columns = DEMOGRAPHIC_INPUTS[demographics]
    output = "output" if demographics == "age" else f"output-{demographics.replace('+', '-')}"  # runs side by side
    text = CONFIG.format(resolution=resolution, columns=columns, demographics=f"inputs: {demographics}", output=output)
    cfg.write_text(text.replace("'", '"'))
    return cfg


def community_areas(tracts: gpd.GeoDataFrame, targets) -> gpd.GeoDataFrame:
    """Chicago's 77 community areas: tracts dissolved, targets as population-weighted tract means."""
    t = tracts.copy()
    pop = t[AGE_COLUMNS].sum(axis=1).clip(lower=1.0)
    cols = list(targets)
    t[cols] = t[cols].mul(pop, axis=0)
    t["_pop"] = pop
    areas = t[["commarea", "_pop", *cols, "geometry"]].dissolve(by="commarea", aggfunc="sum").reset_index()
    areas[cols] = areas[cols].div(areas["_pop"], axis=0)
    return areas.drop(columns="_pop")
