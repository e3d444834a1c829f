"""Coordinates per second: the distilled encoder's embed (SH(L=32) + 8 x 512 MLP, float32) against the cell-lookup
path (points -> H3 cells -> rows of an embedding table), side by side; and the same embed with the former
spherical harmonics (a (point, l, m) array filled by strided writes and gathers, kept as ``_sh``) in the same run.

The network costs about 4.8 MFLOP per coordinate, so these 2 cores' float32 FMA peak allows roughly 40,000
coordinates/s; the target is half of that. Run: .venv/bin/python -m benchmarks.bench_embed
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks._util import best_of


def main() -> dict:
    import importlib

    import torch

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder, _network
    from mobclip_core.grid import cells_to_strings, points_to_cells

    rng = np.random.default_rng(0)
    n = 100_000
    lon, lat = rng.uniform(8.5, 9.5, n), rng.uniform(44.5, 45.5, n)
    out = {}
    for posenc in ("sh", "sh+fourier"):
        cfg = DistilConfig(posenc=posenc, min_wavelength_km=0.3, center_lon=9.0, center_lat=45.0)
        enc = DistilledEncoder(cfg)
        torch.manual_seed(0)
        enc.net = _network(cfg).eval()
        enc.embed(lon[:1000], lat[:1000])  # warm-up
        out[posenc] = n / best_of(lambda enc=enc: enc.embed(lon, lat), 2)
        if posenc == "sh":  # the former SH, side by side; the outputs must agree to float32 rounding
            sh = importlib.import_module("mobclip_core.encoders.spherical_harmonics")
            new_sh, new = sh._sh_torch, enc.embed(lon[:8192], lat[:8192])
            sh._sh_torch = lambda lo, la, degree, sh=sh: sh._sh(lo, la, degree, torch)
            try:
                out["sh, former SH"] = n / best_of(lambda enc=enc: enc.embed(lon, lat), 2)
                out["max |new - former|"] = float(np.abs(enc.embed(lon[:8192], lat[:8192]) - new).max())
            finally:
                sh._sh_torch = new_sh
    cells = np.unique(points_to_cells(lon, lat, 9))
    table = pd.DataFrame(rng.normal(size=(cells.size, 128)).astype(np.float32), index=cells_to_strings(cells))

    def lookup():
        c = cells_to_strings(points_to_cells(lon, lat, 9))
        return table.to_numpy()[table.index.get_indexer(c)]

    out["lookup"] = n / best_of(lookup, 2)
    print(f"distilled embed, SH(32) + 8x512 MLP, float32 : {out['sh']:10,.0f} coords/s  (target >= 32,000)")
    print(f"  the same with the former SH code            : {out['sh, former SH']:10,.0f} coords/s")
    ratio, diff = out["sh"] / out["sh, former SH"], out["max |new - former|"]
    print(f"  new / former = {ratio:.2f}x; max |new - former| = {diff:.1e}")
    print(f"distilled embed, SH(32) + Fourier + MLP       : {out['sh+fourier']:10,.0f} coords/s")
    print(f"cell lookup (res 9, {cells.size:,}-row table)       : {out['lookup']:10,.0f} coords/s")
    print(f"ratio lookup / distilled = {out['lookup'] / out['sh']:.1f}x")
    return out


if __name__ == "__main__":
    main()
