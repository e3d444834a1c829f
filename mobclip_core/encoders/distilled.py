"""Distillation: a spherical-harmonics + MLP network that maps any (lon, lat) to the teacher's cell embedding.

The network is SH(L=32) -> 8 x Linear(512) + ReLU -> Linear(128), as in the published MobCLIP/MoRA distilled
model; its state_dict keys are ``network.{0,2,...,16}.{weight,bias}`` and a saved file holds
``{"model_state_dict": ...}``, so a published ``distilled_MobCLIP.pth`` (float64, input lon/lat degrees) loads here.

SH of degree 32 resolve about 180/32 = 5.6 degrees: enough for a nation (the paper's use), far too coarse for one
city, where every cell would get nearly the same features. ``posenc="sh+fourier"`` (the default for ``fit``) adds
multi-scale sine/cosine features of east/north kilometres from the region's centre, with wavelengths from
``min_wavelength_km`` up to ``max_wavelength_km``, so a city-scale teacher can be distilled too.

A network fitted to one region answers anywhere, but away from its training points the answer is an
extrapolation. ``fit`` records the ``TrainingExtent`` (saved in ``config.json``); ``embed`` warns about points
outside it, or returns NaN rows for them, or refuses them, as ``outside`` says. A published checkpoint or a
``config.json`` written before extents has none and is not checked.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .._optional import import_optional
from ..exceptions import CheckpointError, InvalidInputError, ModelNotFittedError, OutsideExtentWarning
from ..io import output_transaction
from ..options import PositionalEncoding, choices
from ..training.early_stopping import EarlyStopping
from ..training.loop import run_epochs
from .positional import validate_coordinates


@dataclass
class DistilConfig:
    posenc: str = PositionalEncoding.SH_FOURIER.value  # "sh" is the published MobCLIP layout
    fourier_scales: int = 32
    min_wavelength_km: float | None = None  # None: half the median spacing of the training points
    max_wavelength_km: float = 300.0
    center_lon: float = 0.0  # set by fit: the Fourier frame's origin
    center_lat: float = 0.0
    degree: int = 32
    network: str = "mlp"  # "mlp" (ReLU, the published layout) or "siren" (sine layers, SatCLIP-style)
    hidden: int = 512
    layers: int = 8
    out_dim: int = 128
    float64: bool = False
    epochs: int = 1500
    batch_size: int = 1024
    min_batches: int = 5  # optimiser steps per epoch at least (smaller batches, not below 32 points, on few cells)
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 100  # epochs without a 0.1% better loss (validation loss if val_fraction > 0, else training)
    val_fraction: float = 0.0  # distillation reproduces the teacher everywhere it is known: train on all cells
    seed: int = 0


OUTSIDE_MODES = ("warn", "nan", "error", "ignore")
_MAX_EXTENT_CELLS = 20_000  # the footprint's cell count stays below this (a coarser resolution is taken)


@dataclass
class TrainingExtent:
    """Where an encoder saw its teacher: the bounding box, and the H3 cells holding its training points.

    The cells are taken at the finest resolution whose edge is at least the points' median spacing (so the
    footprint has no holes between neighbouring points), plus one ring of cells as a margin.
    """

    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float
    resolution: int
    cells: list[str]

    @classmethod
    def of_points(cls, lon: np.ndarray, lat: np.ndarray) -> TrainingExtent:
        import h3

        from ..grid import cells_to_strings, points_to_cells

        spacing = 2 * _half_spacing_km(lon, lat)
        res = max([r for r in range(16) if h3.average_hexagon_edge_length(r, unit="km") >= spacing] or [0])
        while True:
            core = np.unique(points_to_cells(lon, lat, res))
            if core.size * 7 <= _MAX_EXTENT_CELLS or res == 0:
                break
            res -= 1
        ring = {c for cell in cells_to_strings(core) for c in h3.grid_disk(cell, 1)}
        return cls(float(lon.min()), float(lon.max()), float(lat.min()), float(lat.max()), int(res), sorted(ring))

    @functools.cached_property
    def _footprint(self) -> np.ndarray:
        from ..grid import strings_to_cells

        return np.sort(strings_to_cells(np.asarray(self.cells, dtype=object)))

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean mask: which points fall in the footprint."""
        from ..grid import points_to_cells

        footprint = self._footprint
        cells = points_to_cells(lon, lat, self.resolution)
        if footprint.size == 0 or cells.size == 0:
            return np.zeros(cells.size, dtype=bool)
        pos = np.minimum(np.searchsorted(footprint, cells), footprint.size - 1)
        return footprint[pos] == cells

    def describe(self) -> str:
        return (
            f"lon {self.lon_min:.4f}..{self.lon_max:.4f}, lat {self.lat_min:.4f}..{self.lat_max:.4f} "
            f"({len(self.cells)} H3 cells at resolution {self.resolution})"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainingExtent:
        return cls(**{f.name: raw[f.name] for f in fields(cls)})


def _network(cfg: DistilConfig):
    torch = import_optional("torch")
    from .spherical_harmonics import SphericalHarmonics

    if cfg.posenc not in set(PositionalEncoding):
        raise InvalidInputError(f"posenc must be one of {choices(PositionalEncoding)}, got {cfg.posenc!r}")
    n_fourier = 4 * cfg.fourier_scales if cfg.posenc == PositionalEncoding.SH_FOURIER else 0
    wavelengths = np.geomspace(cfg.min_wavelength_km or 0.3, cfg.max_wavelength_km, max(cfg.fourier_scales, 1))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.posenc = SphericalHarmonics(cfg.degree)
            self.register_buffer("freq", torch.tensor(2 * np.pi / wavelengths, dtype=torch.float64))
            dims = [cfg.degree**2 + n_fourier] + [cfg.hidden] * cfg.layers + [cfg.out_dim]
            self.in_dim = dims[0]  # the width of ``features``
            if cfg.network == "siren":
                from .siren import siren_network

                self.network = siren_network(dims[0], cfg.hidden, cfg.layers, cfg.out_dim)
                return
            mods = []
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
                mods.append(torch.nn.Linear(a, b))
                if i < len(dims) - 2:
                    mods.append(torch.nn.ReLU())
            self.network = torch.nn.Sequential(*mods)

        def features(self, coords):
            sh = self.posenc(coords)
            if not n_fourier:
                return sh
            east = (coords[:, 0] - cfg.center_lon) * (111.32 * np.cos(np.radians(cfg.center_lat)))
            north = (coords[:, 1] - cfg.center_lat) * 110.57
            arg = torch.stack([east, north], 1)[:, :, None] * self.freq.to(coords.dtype)
            fourier = torch.cat([torch.sin(arg), torch.cos(arg)], 1).reshape(coords.shape[0], -1)
            return torch.cat([sh, fourier], 1)

        def forward(self, coords):
            return self.network(self.features(coords))

    net = Net()
    return net.double() if cfg.float64 else net


def _half_spacing_km(lon: np.ndarray, lat: np.ndarray) -> float:
    """Half the median nearest-neighbour distance of the points (km): the finest wavelength worth encoding."""
    from scipy.spatial import cKDTree

    if lon.size < 2:
        return 0.3
    xy = np.c_[lon * 111.32 * np.cos(np.radians(np.mean(lat))), lat * 110.57]
    d, _ = cKDTree(xy).query(xy, k=2)
    return float(max(np.median(d[:, 1]) / 2, 0.01))


def _training_points(lon, lat, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates and targets checked to match and be finite, so a bad table fails before any training."""
    lon, lat = validate_coordinates(lon, lat)
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != lon.size:
        raise InvalidInputError(f"targets must be (n_points, dim); got {y.shape} for {lon.size} points")
    if lon.size == 0:
        raise InvalidInputError("no training points: give the teacher's cell centres and their embeddings")
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y).all(axis=1)).sum())
        raise InvalidInputError(f"{bad} target rows hold NaN or infinite values: drop those cells before fitting")
    return lon, lat, y


MIN_BATCH_POINTS = 32  # below this a batch's gradient is mostly noise


def epoch_batch_size(cfg: DistilConfig, n: int) -> int:
    """The batch for ``n`` training points: ``batch_size``, or smaller so an epoch takes ``min_batches`` steps.

    The epoch budget and early stopping count epochs; a region of a few hundred cells (the demo's 631) would take one
    optimiser step per epoch and reach the epoch cap before the student fits: 3.5% of the teacher's variance left
    unfitted on the demo, against 0.3-0.7% with five steps per epoch (as many as Chicago's 5,345 cells take in
    batches of 1,024, which fit to 0.26%), 0.63% with four and 0.30% with eight, at 1.6-2.4x the time."""
    return max(1, min(cfg.batch_size, max(MIN_BATCH_POINTS, -(-n // max(1, cfg.min_batches)))))


FEATURE_CACHE_BYTES = 2**30  # the positional features of every training point are kept if they fit in this


def _inputs(net, x):
    """The network's input for coordinates ``x``: the positional features computed once, when they fit in
    ``FEATURE_CACHE_BYTES`` (they are fixed: per batch they cost 1.5% of a CPU epoch, and on a GPU, where the SH
    recurrence is hundreds of small steps, most of one), else the coordinates themselves, encoded per batch.
    Returns (table, encode): ``encode(table[rows])`` is the network's input."""
    torch = import_optional("torch")
    if x.shape[0] * net.in_dim * x.element_size() <= FEATURE_CACHE_BYTES:
        with torch.no_grad():
            return torch.cat([net.features(x[s : s + 8192]) for s in range(0, x.shape[0], 8192)]), lambda f: f
    return x, net.features


def _train_network(
    net,
    cfg: DistilConfig,
    lon: np.ndarray,
    lat: np.ndarray,
    y: np.ndarray,
    *,
    progress: bool,
    device: str = "cpu",
    on_progress: Callable[[float], None] | None = None,
    log: Callable[[str], None] | None = None,
):
    """MSE epochs with early stopping on ``device``; ``net`` ends at its best epoch, on the CPU. Returns the
    history. The batches are drawn on the CPU from the seed, so every device trains on the same batches."""
    torch = import_optional("torch")
    dtype = torch.float64 if cfg.float64 else torch.float32
    net.to(device)
    x = torch.tensor(np.c_[lon, lat], dtype=dtype, device=device)
    yt = torch.tensor(y, dtype=dtype, device=device)
    table, encode = _inputs(net, x)
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(x.shape[0], generator=gen)
    n_val = int(round(cfg.val_fraction * x.shape[0])) if x.shape[0] >= 20 else 0
    val, tr = perm[:n_val].to(device), perm[n_val:]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = epoch_batch_size(cfg, tr.numel())
    last_train = [0.0]

    def train_epoch(epoch: int) -> float:
        net.train()
        order = tr[torch.randperm(tr.numel(), generator=gen)].to(device)
        losses = []
        for s in range(0, order.numel(), batch):
            b = order[s : s + batch]
            loss = torch.nn.functional.mse_loss(net.network(encode(table[b])), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        last_train[0] = float(torch.stack(losses).double().mean())  # one wait for a GPU an epoch, not one a batch
        return last_train[0]

    def validate() -> float:
        if not n_val:
            return last_train[0]
        net.eval()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(net.network(encode(table[val])), yt[val]).item()

    stopper = EarlyStopping(cfg.patience, min_delta=1e-3, relative=True)
    history = run_epochs(
        epochs=cfg.epochs,
        train_epoch=train_epoch,
        validate=validate,
        stopper=stopper,
        snapshot=lambda: {k: t.detach().clone() for k, t in net.state_dict().items()},
        desc="distil",
        progress=progress,
        on_progress=on_progress,
        log=log,
        validated=n_val > 0,
    )
    if stopper.best_state is not None:
        net.load_state_dict(stopper.best_state)
    net.to("cpu")  # embed, save and load work on the CPU, wherever the network was fitted
    return history


def _read_saved_config(cfg_file: Path) -> tuple[DistilConfig | None, TrainingExtent | None]:
    """The config and extent ``save`` wrote beside the weights; (None, None) when there is no such file."""
    cfg, extent = None, None
    if cfg_file.exists():
        try:
            raw = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{cfg_file} is not readable JSON ({exc}): save the encoder again") from exc
        if isinstance(raw, dict) and "distil" in raw:
            known = {f.name for f in fields(DistilConfig)}
            cfg = DistilConfig(**{k: v for k, v in raw["distil"].items() if k in known})
            if raw.get("extent"):  # written since extents were saved; older files have none
                extent = TrainingExtent.from_dict(raw["extent"])
    return cfg, extent


def _read_network_state(path: Path) -> dict:
    """The ``network.*`` weights of a checkpoint file, refusing files that are not distilled checkpoints."""
    torch = import_optional("torch")
    if not path.exists():
        raise CheckpointError(f"distilled checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoints
        raise CheckpointError(f"{path} is not a torch checkpoint ({exc})") from exc
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(k.startswith("network.") for k in state):
        raise CheckpointError(f"{path} holds no 'network.*' weights: not a MobCLIP distilled checkpoint")
    return state


def _config_from_weights(path: Path, weights: list) -> DistilConfig:
    """The published SH + MLP architecture read off the weight shapes, for a checkpoint without its config."""
    torch = import_optional("torch")
    degree = int(round(weights[0].shape[1] ** 0.5))
    if degree * degree != weights[0].shape[1]:
        raise CheckpointError(
            f"{path}: first layer takes {weights[0].shape[1]} inputs, not a square number of SH features; "
            "a checkpoint saved with Fourier features needs its config.json beside it"
        )
    return DistilConfig(
        posenc="sh",
        degree=degree,
        hidden=weights[0].shape[0],
        layers=len(weights) - 1,
        out_dim=weights[-1].shape[0],
        float64=weights[0].dtype == torch.float64,
    )


def _check_shapes(path: Path, cfg: DistilConfig, net, state: dict, weights: list) -> None:
    """Refuse weights whose shapes differ from the network ``cfg`` builds, naming the first differences."""
    expected = {f"network.{k}": tuple(v.shape) for k, v in net.network.state_dict().items()}
    in_dim = weights[0].shape[1] if weights else None
    got = {k: tuple(v.shape) for k, v in state.items() if k.startswith("network.")}
    if expected != got:
        diff = [
            f"{k}: expected {expected.get(k)}, got {got.get(k)}"
            for k in sorted(set(expected) | set(got))
            if expected.get(k) != got.get(k)
        ]
        raise CheckpointError(
            f"{path} has the wrong shape for {cfg.posenc}(L={cfg.degree}) -> {cfg.layers} x {cfg.hidden} "
            f"-> {cfg.out_dim} (its first layer takes {in_dim} inputs): " + "; ".join(diff[:4])
        )


class DistilledEncoder:
    """``fit`` to a teacher's cell embeddings, then ``embed(lon, lat)`` anywhere; ``save``/``load`` a directory."""

    def __init__(self, config: DistilConfig | None = None) -> None:
        self.config = config or DistilConfig()
        self.net = None
        self.history: list[dict] = []
        self.extent: TrainingExtent | None = None  # set by fit; None for published checkpoints

    # -- training -------------------------------------------------------------------------------------------
    def fit(
        self,
        lon,
        lat,
        targets: np.ndarray,
        *,
        progress: bool = False,
        device: str = "auto",
        on_progress: Callable[[float], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> DistilledEncoder:
        """MSE regression of ``targets`` (N, out_dim) on coordinates, with early stopping on the training loss
        (or on a held-out share, ``val_fraction``). ``device``: "auto" (the GPU when torch sees one, else the
        CPU), "cpu", "cuda" or "cuda:N"; the fitted network is returned to the CPU either way. The same seed gives
        the same batches on every device; a GPU's arithmetic differs from the CPU's in the last digits.
        ``on_progress(fraction of the epoch budget)`` after each epoch; ``log`` gets the losses every tenth of
        the epochs when there is no progress bar."""
        torch = import_optional("torch")
        from ..training.trainer import check_device, resolve_device

        check_device(device, "device")
        cfg = self.config
        lon, lat, y = _training_points(lon, lat, targets)
        # the fitted frame goes into a copy: the config the caller gave stays as it was
        cfg = self.config = replace(
            cfg,
            out_dim=y.shape[1],
            center_lon=float(np.mean(lon)),
            center_lat=float(np.mean(lat)),
            min_wavelength_km=cfg.min_wavelength_km or _half_spacing_km(lon, lat),
        )
        self.extent = TrainingExtent.of_points(lon, lat)
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG untouched
            torch.manual_seed(cfg.seed)
            self.net = _network(cfg)
        self.history = _train_network(
            self.net,
            cfg,
            lon,
            lat,
            y,
            progress=progress,
            device=resolve_device(device),
            on_progress=on_progress,
            log=log,
        )
        self.net.eval()
        return self

    # -- inference --------------------------------------------------------------------------------------------
    def embed(self, lon, lat, *, batch_size: int = 2048, outside: str = "warn") -> np.ndarray:
        """Embeddings (N, out_dim) of WGS84 coordinates in degrees.

        ``outside`` says what to do with points outside the training extent: "warn" (an OutsideExtentWarning,
        values still computed), "nan" (NaN rows for them), "error" (InvalidInputError) or "ignore". Batches of
        2,048 keep the 512-wide activations in cache: 4-5% faster than 8,192 (``benchmarks/bench_embed.py``).
        """
        torch = import_optional("torch")
        if outside not in OUTSIDE_MODES:
            raise InvalidInputError(f"outside must be one of {list(OUTSIDE_MODES)}, got {outside!r}")
        if self.net is None:
            raise ModelNotFittedError("the distilled encoder is not fitted: call fit() or load() first")
        lon, lat = validate_coordinates(lon, lat)
        inside = np.ones(lon.size, dtype=bool)
        if outside != "ignore":
            inside = ~self.outside_extent(lon, lat)
            n_out = int((~inside).sum())
            if n_out and outside == "error":
                raise InvalidInputError(
                    f"{n_out} of {lon.size} points lie outside the area this encoder was trained on "
                    f"({self.extent.describe()}), e.g. lon {lon[~inside][0]}, lat {lat[~inside][0]}: use points "
                    "inside it, or pass outside='nan' to get NaN rows for the others"
                )
            if n_out and outside == "warn":
                warnings.warn(
                    f"{n_out} of {lon.size} points lie outside the area this encoder was trained on "
                    f"({self.extent.describe()}): their embeddings are extrapolations. Pass outside='nan' for NaN "
                    "rows, outside='error' to refuse them, or outside='ignore' to silence this",
                    OutsideExtentWarning,
                    stacklevel=2,
                )
            if outside == "warn":
                inside[:] = True
        dtype = torch.float64 if self.config.float64 else torch.float32
        result = np.full(
            (lon.size, self.config.out_dim), np.nan, dtype=np.float64 if self.config.float64 else np.float32
        )
        coords = torch.tensor(np.c_[lon[inside], lat[inside]], dtype=dtype)
        out = []
        with torch.inference_mode():
            for s in range(0, coords.shape[0], batch_size):
                out.append(self.net(coords[s : s + batch_size]).numpy())
        if out:
            result[inside] = np.concatenate(out)
        return result

    def outside_extent(self, lon, lat) -> np.ndarray:
        """Boolean mask of the points outside the training extent, so a caller (the QGIS child process) can count
        and report them in its own words; all False when the encoder has no extent (a published checkpoint)."""
        lon, lat = validate_coordinates(lon, lat)
        if self.extent is None or lon.size == 0:
            return np.zeros(lon.size, dtype=bool)
        return ~self.extent.contains(lon, lat)

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``model.pth`` (published layout: {"model_state_dict": network weights}) + ``config.json``, together."""
        torch = import_optional("torch")
        if self.net is None:
            raise ModelNotFittedError("nothing to save: the distilled encoder is not fitted")
        directory = Path(directory)
        state = {f"network.{k}": v for k, v in self.net.network.state_dict().items()}
        meta = {
            "distil": asdict(self.config),
            "history_epochs": len(self.history),
            "extent": self.extent.to_dict() if self.extent is not None else None,
        }
        with output_transaction(directory) as txn:  # weights and the config (extent) that goes with them: both or none
            torch.save({"model_state_dict": state}, txn.path("model.pth"))
            txn.path("config.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, path: str | Path) -> DistilledEncoder:
        """Load a directory written by ``save`` or a bare published checkpoint file (e.g. distilled_MobCLIP.pth)."""
        torch = import_optional("torch")
        path = Path(path)
        if path.is_dir():
            path = path / "model.pth"
        cfg, extent = _read_saved_config(path.parent / "config.json")  # a bare published .pth has none
        state = _read_network_state(path)
        weights = [
            state[k] for k in sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
        ]
        if cfg is None:  # infer the architecture from the published file
            cfg = _config_from_weights(path, weights)
        enc = cls(cfg)
        enc.extent = extent
        enc.net = _network(cfg)
        _check_shapes(path, cfg, enc.net, state, weights)
        dtype = torch.float64 if cfg.float64 else torch.float32
        enc.net.network.load_state_dict(
            {k.removeprefix("network."): v.to(dtype) for k, v in state.items() if k.startswith("network.")}
        )
        enc.net.eval()
        return enc


@dataclass
class Distilled:
    """What ``distil_table`` made: the encoder, the folder it was saved in, and how closely it reproduces the
    teacher on the teacher's own cells (R2 over every dimension; 1 is exact)."""

    encoder: DistilledEncoder
    path: Path
    r2: float


def distil_table(
    table,
    out: str | Path,
    config: DistilConfig | None = None,
    *,
    device: str = "auto",
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Distilled:
    """Distil an embedding table (indexed by H3 cell id) into a coordinate encoder saved in ``out`` (all of it or,
    on failure or a stop, nothing): the student learns each cell's embedding from its centre's coordinates."""
    from ..grid import cell_centroids, strings_to_cells

    if len(table) == 0:
        raise InvalidInputError("the embedding table has no cells: nothing to distil")
    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()))
    target = table.to_numpy(dtype=np.float64)
    encoder = DistilledEncoder(config).fit(
        lon, lat, target, progress=progress, device=device, on_progress=on_progress, log=log
    )
    fitted = encoder.embed(lon, lat, outside="ignore")
    r2 = 1.0 - float(((fitted - target) ** 2).sum() / max(((target - target.mean(axis=0)) ** 2).sum(), 1e-300))
    return Distilled(encoder, encoder.save(out), r2)
