"""LODES commute flows in the published layout, rows made here.

No real LODES OD + crosswalk slice was found in a public repository: projects download them (lehdr, censusdis,
LODES processors); the one committed OD file seen (kcredit/LODES-ACS-commuting-flows, il_od_main_JT00_2015.csv) is a
Git LFS pointer to 315 MB, with no crosswalk.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from mobclip_core.config import LodesSource
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import points_to_cells
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.mobility.build import graph_from_source

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
