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
from ..config import LineConfig, MobilityConfig, TrainConfig
from ..constants import EMBEDDING_PREFIX
from ..exceptions import CheckpointError, ConfigError, InvalidInputError
from ..io import atomic_path
from ..options import GraphEncoder, LineEngine, NodeInit, choices
from ..threads import torch_threads
from .data import TrainingData, coverage_report, prepare_training_data
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
    torch = import_optional("torch")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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


def _load_last(path: Path, model, opt, device: str) -> dict:
    torch = import_optional("torch")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except Exception as exc:  # truncated file, foreign file, or a model of another shape
        raise CheckpointError(
            f"cannot resume from {path} ({type(exc).__name__}: {str(exc)[:200]}): it is damaged or was written for "
            "another model shape (dimensions, modalities or graph changed). Delete it, or run without --resume"
        ) from exc
    return state


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
) -> tuple[list[dict], EarlyStopping]:
    """The contrastive epochs with early stopping on the validation loss; the model ends at its best epoch."""
    torch = import_optional("torch")
    engine = model
    if collectives.world > 1:  # data parallel: each rank takes a slice of every batch; DDP averages the gradients
        engine = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True, broadcast_buffers=False)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience)
    history: list[dict] = []
    start = 0
    last = checkpoint_dir / LAST_CHECKPOINT if checkpoint_dir is not None else None
    if resume and last is not None and last.exists():
        state = _load_last(last, model, opt, model.connected.device)
        start, history = state["epoch"] + 1, state["history"]
        stopper.load_state_dict(state["stopper"])
        gen.set_state(state["generator"])
        model.mobility.generator.set_state(state["dropout_generator"])
        if stopper.should_stop:
            start = cfg.epochs  # it had already stopped: nothing more to train
    rank, world = collectives.rank, collectives.world
    train_idx, val_idx = data.train_idx, data.val_idx
    last_train_loss = [0.0]  # validation falls back to it when there are too few cells to hold any out

    def train_epoch(epoch: int) -> float:
        model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=gen).to(train_idx.device)]
        losses = []
        for s in range(0, order.numel(), cfg.batch_size):
            loss = engine(order[s : s + cfg.batch_size][rank::world], data.features, data.present)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        last_train_loss[0] = float(np.mean(losses))
        return last_train_loss[0]

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            if val_idx.numel() > 1:
                val = model.loss(val_idx, data.features, data.present)
            else:
                val = torch.tensor(last_train_loss[0])
            collectives.average_(val)  # identical on every rank; averaging makes early stopping agree bit for bit
        return float(val)

    def snapshot() -> dict:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def save_last(epoch: int, hist: list[dict]) -> None:
        if last is None or not collectives.is_main:
            return
        last.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "history": hist,
            "stopper": stopper.state_dict(),
            "generator": gen.get_state(),
            "dropout_generator": model.mobility.generator.get_state(),
        }
        with atomic_path(last) as tmp:
            torch.save(state, tmp)

    history = run_epochs(
        epochs=cfg.epochs if cfg.clip else 0,
        train_epoch=train_epoch,
        validate=validate,
        stopper=stopper,
        snapshot=snapshot,
        start_epoch=start,
        history=history,
        after_epoch=save_last,
        desc="MobCLIP",
        progress=progress,
        on_progress=on_progress,
    )
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    model.eval()
    return history, stopper


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
) -> TrainResult:
    """Train MobCLIP on a RegionDataset and return the cell embeddings (``train.output``) and the model.

    ``checkpoint_dir`` receives ``last.pt`` after every epoch (``resume=True`` continues from it exactly);
    ``cache_dir`` keeps the LINE embedding between runs. ``on_progress(stage, fraction)`` reports the stages
    "line" and "train".
    """
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
    line_res = line_embeddings(
        dataset.graph,
        line,
        cache=Path(cache_dir) if cache_dir is not None else None,
        progress=progress,
        on_progress=(lambda f: on_progress("line", f)) if on_progress else None,
        collectives=collectives,
        threads=train.threads,
    )
    model = build_model(data, line_res.embedding, train).to(device)
    with torch_threads(train.threads):  # set for this call only, restored after
        history, stopper = fit(
            model,
            data,
            train,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
            resume=resume,
            progress=progress,
            on_progress=(lambda f: on_progress("train", f)) if on_progress else None,
            collectives=collectives,
        )
        emb = model.cell_embeddings(data.features, data.present, train.output).cpu().numpy().astype(np.float32)
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
