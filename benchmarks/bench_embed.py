"""Coordinates per second: the distilled encoder's embed (SH(L=32) + 8 x 512 MLP, float32) against the cell-lookup
path (points -> H3 cells -> rows of an embedding table), side by side; in the same run the same embed with the
spherical harmonics of the tensor recurrence (``_sh_torch``, the CPU path before the compiled kernel), and with
two batch sizes.

The network costs about 4.8 MFLOP per coordinate, so these 2 cores' float32 FMA peak allows roughly 40,000
coordinates/s (a 8192 x 512 x 512 matmul measures ~160 GFLOP/s here, i.e. ~33,000 coordinates/s for the network
alone). Run: .venv/bin/python -m benchmarks.bench_embed
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
        enc.embed(lon[:1000], lat[:1000])  # warm-up (and the kernel's compilation, when not cached)
        out[posenc] = n / best_of(lambda enc=enc: enc.embed(lon, lat), 2)
        if posenc == "sh":  # the tensor recurrence and the batch sizes, side by side
            kernel = importlib.import_module("mobclip_core.encoders._sh_kernel")
            sh = importlib.import_module("mobclip_core.encoders.spherical_harmonics")
            compiled, new = kernel.sh_features, enc.embed(lon[:8192], lat[:8192])

            def tensor_sh(lo, la, degree, dtype, sh=sh):
                return sh._sh_torch(torch.from_numpy(lo), torch.from_numpy(la), degree).numpy().astype(dtype)

            kernel.sh_features = tensor_sh
            try:
                out["sh, tensor SH"] = n / best_of(lambda enc=enc: enc.embed(lon, lat), 2)
                out["max |compiled - tensor|"] = float(np.abs(enc.embed(lon[:8192], lat[:8192]) - new).max())
            finally:
                kernel.sh_features = compiled
            for batch in (2048, 8192):
                out[f"batch {batch}"] = n / best_of(lambda enc=enc, b=batch: enc.embed(lon, lat, batch_size=b), 2)
    cells = np.unique(points_to_cells(lon, lat, 9))
    table = pd.DataFrame(rng.normal(size=(cells.size, 128)).astype(np.float32), index=cells_to_strings(cells))

    def lookup():
        c = cells_to_strings(points_to_cells(lon, lat, 9))
        return table.to_numpy()[table.index.get_indexer(c)]

    out["lookup"] = n / best_of(lookup, 2)
    print(f"distilled embed, SH(32) + 8x512 MLP, float32 : {out['sh']:10,.0f} coords/s  (target >= 32,000)")
    print(f"  the same with the tensor-recurrence SH      : {out['sh, tensor SH']:10,.0f} coords/s")
    ratio, diff = out["sh"] / out["sh, tensor SH"], out["max |compiled - tensor|"]
    print(f"  compiled / tensor = {ratio:.2f}x; max |compiled - tensor| = {diff:.1e}")
    for batch in (2048, 8192):
        print(f"  batches of {batch:5d}                          : {out[f'batch {batch}']:10,.0f} coords/s")
    print(f"distilled embed, SH(32) + Fourier + MLP       : {out['sh+fourier']:10,.0f} coords/s")
    print(f"cell lookup (res 9, {cells.size:,}-row table)       : {out['lookup']:10,.0f} coords/s")
    print(f"ratio lookup / distilled = {out['lookup'] / out['sh']:.1f}x")
    return out


if __name__ == "__main__":
    main()
