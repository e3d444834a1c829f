"""The MobCLIP trainer: LINE on the full graph, LightGCN on the sampled graph, CLIP alignment of modalities.

``train_mobclip`` runs the parts in order: ``prepare_training_data`` (graph, features, split),
``line_embeddings`` (cached), ``build_model``, then ``fit`` (one epoch loop with one ``EarlyStopping`` whose state,
with the optimizer's and the generators', goes into ``checkpoint/last.pt`` so resume is exact). Writing the run's
files is the pipeline's job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..collectives import SINGLE_PROCESS, Collectives
from ..config import LineConfig, MobilityConfig, TrainConfig, check_device_name
from ..constants import EMBEDDING_PREFIX
from ..exceptions import CheckpointError, ConfigError, InvalidInputError
from ..grid import cell_resolution
from ..io import atomic_path
from ..options import GraphEncoder, LineEngine, NodeInit, choices
from ..threads import torch_threads
from .data import TrainingData, context_rings, coverage_report, neighbourhood_context, prepare_training_data
from .early_stopping import EarlyStopping
from .loop import run_epochs
from .pretrain import line_embeddings

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.pt"


@dataclass
class TrainResult:
    embeddings: pd.DataFrame  # index h3_cell, columns emb_0..emb_{d-1}
    history: pd.DataFrame  # epoch, train_loss, val_loss, seconds
    best_epoch: int
    seconds: float
    line_seconds: float
    line_samples_per_second: float
    modalities: list[str]
    model: object = field(default=None, repr=False)  # the trained MobCLIP module (best epoch), eval mode
    coverage: dict = field(default_factory=dict)
    line_embedding: np.ndarray | None = field(default=None, repr=False)  # the LINE pre-encoding, dataset order


def resolve_device(device: str) -> str:
    """Where training runs: "auto" is the GPU when torch sees one, else the CPU."""
    torch = import_optional("torch")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_device(device: object, setting: str = "[train] device") -> None:
    """Refuse a device torch cannot use here, naming the ones it can (``setting``: where the value came from)."""
    check_device_name(device, setting)
    torch = import_optional("torch")
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index or 0) >= gpus:
            seen = f"sees {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "sees no GPU (or was built without CUDA)"
            raise ConfigError(
                f'{setting} is {device!r}, but torch {seen} here: use "auto" (the GPU when there is one, else the '
                'CPU) or "cpu"'
            )


def check_config(train: TrainConfig, line: LineConfig) -> None:
    """Refuse settings that cannot train, before any work is done."""
    for name, value in (("[train] embedding_dim", train.embedding_dim), ("[line] dim", line.dim)):
        if value < 1:
            raise ConfigError(f"{name} must be a positive number of dimensions (128 in the paper), got {value}")
    if train.embedding_dim != line.dim and train.graph_encoder == GraphEncoder.LIGHTGCN:
        raise ConfigError(
            f"[line] dim ({line.dim}) must equal [train] embedding_dim ({train.embedding_dim}) "
            "for the LightGCN encoder, which keeps the LINE width"
        )
    if line.engine not in set(LineEngine):
        raise ConfigError(f"[line] engine must be one of {choices(LineEngine)}, got {line.engine!r}")
    if isinstance(train.threads, bool) or not isinstance(train.threads, int) or train.threads < 0:
        raise ConfigError(f"[train] threads must be a whole number >= 0 (0: every usable core), got {train.threads!r}")
    check_device(train.device)


def build_model(data: TrainingData, line_embedding: np.ndarray, cfg: TrainConfig):
    """The MobCLIP module for ``data``; parameters drawn from ``cfg.seed`` without touching the global RNG."""
    torch = import_optional("torch")
    from ..models.mobclip import MobCLIP, MobilityEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        init = torch.from_numpy(line_embedding)
        if cfg.init == NodeInit.RANDOM:
            init = torch.randn(init.shape) * 0.1
        encoder = MobilityEncoder(
            init,
            data.edge_index,
            data.edge_weight,
            layers=cfg.layers,
            kind=cfg.graph_encoder,
            out_dim=cfg.embedding_dim,
            disk_block_rows=cfg.disk_block_rows or None,
            edge_dropout=cfg.edge_dropout,
            trainable=not cfg.freeze_nodes,
            seed=cfg.seed,
        )
        return MobCLIP(
            encoder,
            data.dims,
            embedding_dim=cfg.embedding_dim,
            demographics_hidden_dim=cfg.demographics_hidden_dim,
            temperatures=cfg.temperatures,
            learnable_temperature=cfg.learnable_temperature,
            anchor=cfg.anchor,
            connected=data.connected.cpu(),
            standardisation=data.standardisation,
            propagate_modalities=cfg.propagate_modalities,
        )


def make_optimizer(model, cfg: TrainConfig):
    """AdamW; weight decay on weight matrices only; the node table may have its own rate and decay."""
    torch = import_optional("torch")
    nodes = {id(p) for p in model.mobility.node_parameters()}
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in nodes]
    groups = [
        {"params": [p for n, p in params if p.ndim >= 2 and "bias" not in n], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if not (p.ndim >= 2 and "bias" not in n)], "weight_decay": 0.0},
    ]
    if nodes:
        groups.append(
            {
                "params": model.mobility.node_parameters(),
                "lr": cfg.node_lr if cfg.node_lr is not None else cfg.lr,
                "weight_decay": cfg.node_weight_decay if cfg.node_weight_decay is not None else cfg.weight_decay,
            }
        )
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def _load_last(path: Path, model, opt) -> dict:
    """``last.pt`` read on the CPU (the generators' states must stay there); the weights and the optimizer's state
    are copied onto the model's device as they load."""
    torch = import_optional("torch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except Exception as exc:  # truncated file, foreign file, or a model of another shape
        raise CheckpointError(
            f"cannot resume from {path} ({type(exc).__name__}: {str(exc)[:200]}): it is damaged or was written for "
            "another model shape (dimensions, modalities or graph changed). Delete it, or run without --resume"
        ) from exc
    return state


def _parallel_engine(model, collectives: Collectives):
    """The module the batches go through: DDP around the model when several ranks share every batch."""
    torch = import_optional("torch")
    if collectives.world > 1:  # data parallel: each rank takes a slice of every batch; DDP averages the gradients
        return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True, broadcast_buffers=False)
    return model


def _resume_from_last(
    last: Path | None, resume: bool, model, opt, stopper: EarlyStopping, gen, epochs: int
) -> tuple[int, list[dict]]:
    """The first epoch and the history so far, restoring every state from ``last.pt`` so resume is exact."""
    if not (resume and last is not None and last.exists()):
        return 0, []
    state = _load_last(last, model, opt)
    start, history = state["epoch"] + 1, state["history"]
    stopper.load_state_dict(state["stopper"])
    gen.set_state(state["generator"])
    model.mobility.generator.set_state(state["dropout_generator"])
    if stopper.should_stop:
        start = epochs  # it had already stopped: nothing more to train
    return start, history


@dataclass
class _EpochSteps:
    """The callbacks ``run_epochs`` drives, sharing one model, optimizer, shuffling generator and stopper."""

    model: object
    engine: object
    opt: object
    gen: object
    stopper: EarlyStopping
    data: TrainingData
    cfg: TrainConfig
    collectives: Collectives
    last: Path | None
    last_train_loss: float = 0.0  # validation falls back to it when there are too few cells to hold any out

    def train_epoch(self, epoch: int) -> float:
        """One shuffled pass over the training cells, each rank taking its slice of every batch."""
        torch = import_optional("torch")
        rank, world = self.collectives.rank, self.collectives.world
        train_idx = self.data.train_idx
        self.model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=self.gen).to(train_idx.device)]
        losses = []
        for s in range(0, order.numel(), self.cfg.batch_size):
            loss = self.engine(order[s : s + self.cfg.batch_size][rank::world], self.data.features, self.data.present)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        self.last_train_loss = float(np.mean(losses))
        return self.last_train_loss

    def validate(self) -> float:
        """The validation loss, the same on every rank so early stopping agrees."""
        torch = import_optional("torch")
        val_idx = self.data.val_idx
        self.model.eval()
        with torch.no_grad():
            if val_idx.numel() > 1:
                val = self.model.loss(val_idx, self.data.features, self.data.present)
            else:
                val = torch.tensor(self.last_train_loss, device=val_idx.device)
            self.collectives.average_(val)  # identical on every rank; averaging makes early stopping agree bit for bit
        return float(val)

    def snapshot(self) -> dict:
        """A detached copy of the weights, kept as the best epoch's."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save_last(self, epoch: int, hist: list[dict]) -> None:
        """Write ``last.pt`` (main rank only) with every state a later resume needs."""
        torch = import_optional("torch")
        if self.last is None or not self.collectives.is_main:
            return
        self.last.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": epoch,
            "history": hist,
            "stopper": self.stopper.state_dict(),
            "generator": self.gen.get_state(),
            "dropout_generator": self.model.mobility.generator.get_state(),
        }
        with atomic_path(self.last) as tmp:
            torch.save(state, tmp)


def fit(
    model,
    data: TrainingData,
    cfg: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    collectives: Collectives = SINGLE_PROCESS,
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict], EarlyStopping]:
    """The contrastive epochs with early stopping on the validation loss; the model ends at its best epoch."""
    torch = import_optional("torch")
    engine = _parallel_engine(model, collectives)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience)
    last = checkpoint_dir / LAST_CHECKPOINT if checkpoint_dir is not None else None
    start, history = _resume_from_last(last, resume, model, opt, stopper, gen, cfg.epochs)
    steps = _EpochSteps(model, engine, opt, gen, stopper, data, cfg, collectives, last)
    history = run_epochs(
        epochs=cfg.epochs if cfg.clip else 0,
        train_epoch=steps.train_epoch,
        validate=steps.validate,
        stopper=stopper,
        snapshot=steps.snapshot,
        start_epoch=start,
        history=history,
        after_epoch=steps.save_last,
        desc="MobCLIP",
        progress=progress,
        on_progress=on_progress,
        log=log,
    )
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    model.eval()
    return history, stopper


def _stage_progress(on_progress: Callable[[str, float], None] | None, stage: str) -> Callable[[float], None] | None:
    """``on_progress`` narrowed to one stage, so each stage reports plain fractions."""
    return (lambda f: on_progress(stage, f)) if on_progress else None


def _pretrain_line(
    dataset,
    line: LineConfig,
    train: TrainConfig,
    *,
    cache_dir: str | Path | None,
    progress: bool,
    on_progress: Callable[[str, float], None] | None,
    collectives: Collectives,
):
    """The LINE stage: the full graph's pre-encoding, from the cache when the graph and settings are unchanged."""
    return line_embeddings(
        dataset.graph,
        line,
        cache=Path(cache_dir) if cache_dir is not None else None,
        progress=progress,
        on_progress=_stage_progress(on_progress, "line"),
        collectives=collectives,
        threads=train.threads,
        device=resolve_device(train.device),  # the torch engine's; the compiled one runs on the CPU
    )


def _fit_and_embed(
    model,
    data: TrainingData,
    train: TrainConfig,
    *,
    checkpoint_dir: str | Path | None,
    resume: bool,
    progress: bool,
    on_progress: Callable[[float], None] | None,
    collectives: Collectives,
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict], EarlyStopping, np.ndarray]:
    """Train, then embed every cell, both under the configured thread count (restored after)."""
    with torch_threads(train.threads):  # set for this call only, restored after
        history, stopper = fit(
            model,
            data,
            train,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
            resume=resume,
            progress=progress,
            on_progress=on_progress,
            collectives=collectives,
            log=log,
        )
        emb = model.cell_embeddings(data.features, data.present, train.output).cpu().numpy().astype(np.float32)
    return history, stopper, emb


def train_mobclip(
    dataset,
    train: TrainConfig,
    line: LineConfig,
    *,
    sampling: str = MobilityConfig.sampling,
    ratio: float = MobilityConfig.ratio,
    spatial_weight: float = MobilityConfig.spatial_weight,
    checkpoint_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    on_progress: Callable[[str, float], None] | None = None,
    collectives: Collectives = SINGLE_PROCESS,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train MobCLIP on a RegionDataset and return the cell embeddings (``train.output``) and the model.

    ``checkpoint_dir`` receives ``last.pt`` after every epoch (``resume=True`` continues from it exactly);
    ``cache_dir`` keeps the LINE embedding between runs. ``on_progress(stage, fraction)`` reports the stages
    "line" and "train"; ``log`` gets the losses every tenth of the epochs when ``progress`` (a bar) is off.
    """
    from ..models.mobclip import quiet_torch_geometric

    with quiet_torch_geometric():  # its first import prints a torch deprecation notice about its own code
        import_optional("torch_geometric")
    t_start = time.perf_counter()
    check_config(train, line)
    if dataset.graph.n_edges == 0:
        raise InvalidInputError("the mobility graph has no edges: nothing to train on")
    coverage = coverage_report(dataset.graph, spatial_weight)
    device = resolve_device(train.device)
    data = prepare_training_data(
        dataset, train, sampling=sampling, ratio=ratio, spatial_weight=spatial_weight, device=device
    )
    line_res = _pretrain_line(
        dataset, line, train, cache_dir=cache_dir, progress=progress, on_progress=on_progress, collectives=collectives
    )
    model = build_model(data, line_res.embedding, train).to(device)
    history, stopper, emb = _fit_and_embed(
        model,
        data,
        train,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
        on_progress=_stage_progress(on_progress, "train"),
        collectives=collectives,
        log=log,
    )
    rings = context_rings(cell_resolution(dataset.cells[0]), train.context_m)
    emb = neighbourhood_context(dataset.cells, emb, rings, train.context_weight)
    cols = [f"{EMBEDDING_PREFIX}{i}" for i in range(emb.shape[1])]
    return TrainResult(
        embeddings=pd.DataFrame(emb, index=dataset.cell_ids, columns=cols),
        history=pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", "seconds"]),
        best_epoch=max(stopper.best_epoch, 0),
        seconds=time.perf_counter() - t_start,
        line_seconds=line_res.seconds,
        line_samples_per_second=line_res.samples_per_second,
        modalities=data.modalities,
        model=model,
        coverage=coverage,
        line_embedding=line_res.embedding,
    )


__all__ = ["TrainResult", "build_model", "fit", "train_mobclip"]
