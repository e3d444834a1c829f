"""Imagery modality: one chip per cell from a GeoTIFF mosaic, encoded by an open_clip image tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..constants import REGION_INDEX
from ..exceptions import CheckpointError, CRSError, InvalidInputError
from ..grid import cells_to_polygons, cells_to_strings, strings_to_cells
from .base import BuildContext, FeatureModality
from .cache import cached, fingerprint

# CLIP's normalisation constants (RemoteCLIP uses the same preprocessing).
_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def _check_exists(raster: str | Path) -> Path:
    raster = Path(raster)
    if not raster.is_file():
        raise InvalidInputError(
            f"imagery {raster} does not exist: set [image] path to a GeoTIFF mosaic of the region "
            "(paths are relative to the config file), or remove the [image] section"
        )
    return raster


def load_image_encoder(checkpoint: str | Path | None, model_name: str = "ViT-B-32", device: str = "cpu"):
    """open_clip model with weights from a local checkpoint file (e.g. RemoteCLIP-ViT-B-32.pt).

    ``checkpoint=None`` builds the architecture with random weights, which is only useful for tests.
    """
    open_clip = import_optional("open_clip")
    torch = import_optional("torch")
    model = open_clip.create_model(model_name, pretrained=None, device=device)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"image encoder checkpoint {path} does not exist; give a local .pt file")
        state = torch.load(path, map_location=device, weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not fit open_clip {model_name!r}: {str(exc).splitlines()[0]}. "
                "Pass the model_name the checkpoint was trained with (RemoteCLIP: ViT-B-32, ViT-L-14, RN50)"
            ) from exc
    model.eval()
    return model


def read_chips(
    raster: str | Path, cells: np.ndarray, *, size: int = 224, bands=(1, 2, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``size`` x ``size`` RGB chip per cell (the cell's bounding box, resampled), scaled to [0, 1].

    Returns (chips[N, 3, size, size] float32, ok[N] bool): cells outside the mosaic or all-nodata are not ok.
    """
    rasterio = import_optional("rasterio")
    from rasterio.enums import Resampling
    from rasterio.warp import transform_bounds

    _check_exists(raster)
    polys = cells_to_polygons(cells)
    chips = np.zeros((len(cells), 3, size, size), dtype=np.float32)
    ok = np.zeros(len(cells), dtype=bool)
    with rasterio.open(raster) as src:
        if src.crs is None:
            raise CRSError(f"imagery {raster} has no CRS")
        if src.count < len(bands):
            raise InvalidInputError(f"imagery {raster} has {src.count} bands; chips need bands {bands}")
        scale = 255.0 if src.dtypes[0] == "uint8" else None
        for i, poly in enumerate(polys):
            left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, *poly.bounds)
            win = rasterio.windows.from_bounds(left, bottom, right, top, src.transform)
            data = src.read(
                list(bands),
                window=win,
                out_shape=(len(bands), size, size),
                boundless=True,
                fill_value=src.nodata or 0,
                resampling=Resampling.bilinear,
            ).astype(np.float32)
            if not data.any():
                continue
            chips[i] = data / (scale or max(float(data.max()), 1e-6))
            ok[i] = True
    return chips, ok


def image_features(
    raster: str | Path,
    cells,
    *,
    checkpoint: str | Path | None,
    model_name: str = "ViT-B-32",
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Image-encoder embedding of each cell's chip (index ``h3_cell``; cells without imagery left out)."""
    torch = import_optional("torch")
    cell_ids = strings_to_cells(np.asarray(cells))
    raster = _check_exists(raster)

    def compute() -> pd.DataFrame:
        model = load_image_encoder(checkpoint, model_name)
        size = model.visual.image_size
        size = size[0] if isinstance(size, tuple | list) else size
        chips, ok = read_chips(raster, cell_ids, size=int(size))
        chips = (chips[ok] - _MEAN[None, :, None, None]) / _STD[None, :, None, None]
        out = []
        with torch.no_grad():
            for s in range(0, len(chips), batch_size):
                out.append(model.encode_image(torch.from_numpy(chips[s : s + batch_size])).float().numpy())
        vecs = np.concatenate(out) if out else np.zeros((0, model.visual.output_dim), dtype=np.float32)
        return pd.DataFrame(
            vecs,
            columns=[f"img_{i}" for i in range(vecs.shape[1])],
            index=pd.Index(cells_to_strings(cell_ids[ok]), name=REGION_INDEX),
        )

    ck = Path(checkpoint) if checkpoint is not None else "random"
    key = fingerprint("image", model_name, raster, ck, list(cells_to_strings(cell_ids)))
    return cached(cache_dir, "image", key, compute)


def image_stats_features(
    raster: str | Path, cells, *, size: int = 64, bins: int = 8, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """Weight-free image features per cell chip: per-band mean, std, histogram and edge density.

    For regions without a pretrained image encoder checkpoint (none ships offline); a cheap, honest baseline.
    """
    cell_ids = strings_to_cells(np.asarray(cells))
    raster = _check_exists(raster)

    def compute() -> pd.DataFrame:
        chips, ok = read_chips(raster, cell_ids, size=size)
        chips = chips[ok]
        feats = [chips.mean(axis=(2, 3)), chips.std(axis=(2, 3))]
        edges = np.abs(np.diff(chips, axis=3)).mean(axis=(1, 2, 3))[:, None]
        hist = (
            np.stack(
                [np.stack([np.histogram(c[b], bins=bins, range=(0, 1))[0] for b in range(3)]).ravel() for c in chips]
            )
            / float(size * size)
            if len(chips)
            else np.zeros((0, 3 * bins))
        )
        vecs = np.concatenate([*feats, edges, hist], axis=1).astype(np.float32)
        return pd.DataFrame(
            vecs,
            columns=[f"img_{i}" for i in range(vecs.shape[1])],
            index=pd.Index(cells_to_strings(cell_ids[ok]), name=REGION_INDEX),
        )

    key = fingerprint("image_stats", size, bins, raster, list(cells_to_strings(cell_ids)))
    return cached(cache_dir, "image_stats", key, compute)


class ImageModality(FeatureModality):
    """``[image]``: one chip per cell from a GeoTIFF mosaic -> open_clip embedding or weight-free statistics."""

    name = "image"

    def describe(self, section) -> str:
        return f"image: {section.encoder} features from {section.path}"

    def build(self, section, cells: np.ndarray, ctx: BuildContext) -> pd.DataFrame:
        raster = ctx.resolve(section.path)
        if section.encoder == "open_clip":
            return image_features(
                raster,
                cells,
                checkpoint=ctx.resolve(section.checkpoint),
                model_name=section.model_name,
                cache_dir=ctx.cache_dir,
            )
        return image_stats_features(raster, cells, cache_dir=ctx.cache_dir)
