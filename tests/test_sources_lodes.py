"""LODES commute flows in the published layout: real Detroit 2019 jobs (tests/data/lodes_detroit_2019, see its
LICENSE-NOTE.md) and a few rows made here for the edge cases (a state with a leading zero, the job-type columns).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest

from mobclip_core.config import LodesSource
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import points_to_cells
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.mobility.build import graph_from_source

DETROIT = Path(__file__).parent / "data" / "lodes_detroit_2019"
OD_HEADER = "w_geocode,h_geocode,S000,SA01,SA02,SA03,SE01,SE02,SE03,SI01,SI02,SI03,createdate"
XWALK_HEADER = "tabblk2020,st,stusps,stname,cty,ctyname,trct,blklatdd,blklondd,createdate"


def _write(tmp_path):
    # three blocks of Alabama (state 01: the leading zero must survive), a fourth missing from the crosswalk
    blocks = {
        "010010201001000": (32.47, -86.49),
        "010010201001001": (32.48, -86.47),
        "010010202001000": (32.51, -86.40),
    }
    xwalk = [XWALK_HEADER] + [
        f"{b},01,AL,Alabama,01001,Autauga,010010201,{la},{lo},20230321" for b, (la, lo) in blocks.items()
    ]
    (tmp_path / "al_xwalk.csv.gz").write_bytes(gzip.compress("\n".join(xwalk).encode()))
    b = list(blocks)
    od = [
        OD_HEADER,
        f"{b[0]},{b[1]},5,1,3,1,1,2,2,0,1,4,20230321",  # 5 jobs: home b1 -> work b0
        f"{b[1]},{b[0]},2,0,2,0,0,1,1,0,0,2,20230321",  # 2 jobs the other way
        f"{b[2]},{b[0]},7,2,4,1,3,3,1,1,1,5,20230321",
        f"{b[2]},010019999999999,4,1,1,2,1,1,2,0,0,4,20230321",  # home block not in the crosswalk
    ]
    (tmp_path / "al_od_main_JT00_2021.csv.gz").write_bytes(gzip.compress("\n".join(od).encode()))
    return blocks


def test_lodes_home_work_flows(tmp_path):
    blocks = _write(tmp_path)
    ctx = BuildContext(9, resolve=lambda p: tmp_path / p)
    graph = graph_from_source(LodesSource(path="al_od_main_JT00_2021.csv.gz", crosswalk="al_xwalk.csv.gz"), ctx)
    lat, lon = np.array(list(blocks.values())).T
    c = np.searchsorted(graph.cells, points_to_cells(lon, lat, 9))
    assert graph.adjacency[c[0], c[1]] == 5 + 2 and graph.adjacency[c[0], c[2]] == 7
    assert graph.adjacency.sum() / 2 == 14  # the row with an unknown block is skipped
    young = graph_from_source(
        LodesSource(path="al_od_main_JT00_2021.csv.gz", crosswalk="al_xwalk.csv.gz", jobs="SA01"), ctx
    )
    assert young.adjacency[c[0], c[1]] == 1 and young.adjacency[c[0], c[2]] == 2


def test_lodes_errors(tmp_path):
    _write(tmp_path)
    ctx = BuildContext(9, resolve=lambda p: tmp_path / p)
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(InvalidInputError, match="not a LODES crosswalk"):
        graph_from_source(LodesSource(path="al_od_main_JT00_2021.csv.gz", crosswalk="x.csv"), ctx)
    with pytest.raises(InvalidInputError, match="lacks \\['S001'\\]"):
        graph_from_source(
            LodesSource(path="al_od_main_JT00_2021.csv.gz", crosswalk="al_xwalk.csv.gz", jobs="S001"), ctx
        )


def test_lodes_real_detroit_jobs_land_on_their_cells():
    """Real LODES 2019 counts (home and work places are H3 res-7 cells with their centre points, the published
    OD + crosswalk columns): hand-checked pair and totals, read with zcat."""
    messages = []
    ctx = BuildContext(7, resolve=lambda p: DETROIT / p, say=messages.append)
    src = LodesSource(path="mi_od_main_JT00_2019.csv.gz", crosswalk="tri_county_hex_xwalk.csv.gz")
    graph = graph_from_source(src, ctx)

    def at(code):
        cell = h3.str_to_int(code)
        i = int(np.searchsorted(graph.cells, cell))
        assert graph.cells[i] == cell
        return i

    # 122 people live in 87274d34dffffff (north-west Detroit suburbs) and work in 872ab2c58ffffff; nobody the
    # other way in this slice (it holds the first 60 home places)
    assert graph.adjacency[at("87274d34dffffff"), at("872ab2c58ffffff")] == 122
    assert graph.adjacency[at("872ab2cb4ffffff"), at("87274d369ffffff")] == 112
    # 14,216 rows, 81,623 jobs; 60 rows (22,073 jobs) work in "rest_of_usa", which has no point: skipped and said;
    # 834 jobs have home and work in the same cell: no link
    assert graph.adjacency.diagonal().sum() == 0
    assert graph.adjacency.sum() / 2 == 81_623 - 22_073 - 834
    assert any("60 rows with a block missing from the crosswalk, skipped" in m for m in messages), messages
