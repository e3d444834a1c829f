"""The MobCLIP trainer: LINE on the full graph, LightGCN on the sampled graph, CLIP alignment of modalities."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..config import LineConfig, TrainConfig
from ..constants import EMBEDDING_PREFIX
from ..exceptions import ConfigError, InvalidInputError, ModalityMissingError
from ..io import atomic_path


@dataclass
class TrainResult:
    embeddings: pd.DataFrame  # index h3_cell, columns emb_0..emb_{d-1}
    history: pd.DataFrame  # epoch, train_loss, val_loss, seconds
    best_epoch: int
    seconds: float
    line_seconds: float
    line_samples_per_second: float
    modalities: list[str]


def seed_everything(seed: int) -> None:
    torch = import_optional("torch")
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code that uses the global state
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    torch = import_optional("torch")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _standardise(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    mu = x[present].mean(axis=0)
    sd = x[present].std(axis=0)
    sd[sd < 1e-8] = 1.0
    out = (x - mu) / sd
    out[~present] = 0.0
    return out.astype(np.float32)


def select_modalities(dataset, cfg: TrainConfig) -> list[str]:
    """Modalities to align: those requested that the dataset has; refuse all-missing ones."""
    chosen = [m for m in cfg.modalities if m in dataset.features]
    for m in chosen:
        dataset.feature_matrix(m)  # raises ModalityMissingError when no cell has it
    if cfg.anchor != "mobility" and cfg.anchor not in chosen:
        raise ConfigError(f"anchor {cfg.anchor!r} is not among the dataset's modalities {chosen}")
    if cfg.clip and not chosen:
        raise ModalityMissingError(
            f"no auxiliary modality to align: the dataset has {sorted(dataset.features)}, the config asks for "
            f"{cfg.modalities}. Add POI, image or demographics inputs, or set [train] clip = false"
        )
    return chosen


def line_embeddings(graph, line: LineConfig, cache: Path | None = None, progress: bool = False):
    """LINE on the full graph, cached beside the run (keyed by the graph and the LINE settings)."""
    from ..modalities.cache import fingerprint
    from ..models.line import LineResult, train_line

    key = fingerprint(
        "line",
        asdict(line),
        graph.adjacency.data.tobytes().hex()[:4096],
        int(graph.adjacency.nnz),
        graph.cells.tobytes().hex()[:4096],
    )
    if cache is not None:
        path = cache / f"line-{key}.npy"
        if path.exists():
            return LineResult(np.load(path), 0, 0.0)
    res = train_line(
        graph.adjacency,
        dim=line.dim,
        order=line.order,
        samples_per_edge=line.samples_per_edge,
        negatives=line.negatives,
        lr=line.lr,
        batch_size=line.batch_size,
        seed=line.seed,
        progress=progress,
    )
    from .distributed import is_main

    if cache is not None and is_main():
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, res.embedding)
    return res


def train_mobclip(
    dataset,
    train: TrainConfig,
    line: LineConfig,
    *,
    sampling: str = "top_k",
    ratio: float = 0.3,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train MobCLIP on a RegionDataset; writes checkpoint, config and loss log into ``out_dir`` if given."""
    torch = import_optional("torch")
    import_optional("torch_geometric")
    from ..models.mobclip import MobCLIP, MobilityEncoder

    t_start = time.perf_counter()
    modalities = select_modalities(dataset, train)
    if train.embedding_dim != line.dim and train.graph_encoder == "lightgcn":
        raise ConfigError(
            f"[line] dim ({line.dim}) must equal [train] embedding_dim ({train.embedding_dim}) "
            "for the LightGCN encoder, which keeps the LINE width"
        )
    if dataset.graph.n_edges == 0:
        raise InvalidInputError("the mobility graph has no edges: nothing to train on")
    out = Path(out_dir) if out_dir is not None else None
    seed_everything(train.seed)
    device = resolve_device(train.device)

    line_res = line_embeddings(dataset.graph, line, cache=out / "cache" if out else None, progress=progress)
    init = torch.from_numpy(line_res.embedding)
    if train.init == "random":
        init = torch.randn(init.shape, generator=torch.Generator().manual_seed(train.seed)) * 0.1

    sampled = dataset.graph.top_k(ratio) if sampling == "top_k" else dataset.graph.random_sample(ratio, train.seed)
    coo = sampled.adjacency.tocoo()
    edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    edge_weight = torch.from_numpy(coo.data.astype(np.float32))
    features, present, dims = {}, {}, {}
    for m in modalities:
        x, p = dataset.feature_matrix(m)
        features[m] = torch.from_numpy(_standardise(x, p)).to(device)
        present[m] = torch.from_numpy(p.copy()).to(device)
        dims[m] = x.shape[1]

    encoder = MobilityEncoder(
        init,
        edge_index,
        edge_weight,
        layers=train.layers,
        kind=train.graph_encoder,
        out_dim=train.embedding_dim,
        disk_block_rows=train.disk_block_rows or None,
    )
    model = MobCLIP(
        encoder,
        dims,
        embedding_dim=train.embedding_dim,
        demo_hidden_dim=train.demo_hidden_dim,
        temperatures=train.temperatures,
        learnable_temperature=train.learnable_temperature,
        anchor=train.anchor,
    ).to(device)
    from .distributed import average_, is_main, rank_world

    rank, world = rank_world()
    engine = model
    if world > 1:  # data parallel: each rank takes a slice of every batch; DDP averages the gradients
        engine = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True, broadcast_buffers=False)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "bias" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "bias" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=train.lr
    )

    n = dataset.cells.size
    gen = torch.Generator().manual_seed(train.seed)
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(train.val_fraction * n))) if n >= 10 else 0
    val_idx, train_idx = perm[:n_val].to(device), perm[n_val:].to(device)

    history: list[dict] = []
    best = (float("inf"), 0, None)
    start_epoch = 0
    ckpt_dir = out / "checkpoint" if out else None
    if resume and ckpt_dir is not None and (ckpt_dir / "last.pt").exists():
        state = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best = (state["best_val"], state["best_epoch"], state["best_model"])
        gen.set_state(state["generator"])

    bar = None
    epochs = train.epochs if train.clip else 0
    if progress and epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start_epoch, desc="MobCLIP", unit="epoch")
    stale = 0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=gen).to(device)]
        losses = []
        for s in range(0, order.numel(), train.batch_size):
            batch = order[s : s + train.batch_size][rank::world]
            loss = engine(batch, features, present)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            val_t = model.loss(val_idx, features, present) if n_val > 1 else torch.tensor(float(np.mean(losses)))
            average_(val_t)  # identical on every rank; averaging makes early stopping agree bit for bit
            val = float(val_t)
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val, "seconds": time.perf_counter() - t0}
        )
        if val < best[0] - 1e-6 or train.patience <= 0:
            best, stale = (val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}), 0
        else:
            stale += 1
        if bar is not None:
            bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{val:.3f}")
            bar.update(1)
        if ckpt_dir is not None and is_main():
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_dir / "last.pt") as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": epoch,
                        "history": history,
                        "best_val": best[0],
                        "best_epoch": best[1],
                        "best_model": best[2],
                        "generator": gen.get_state(),
                    },
                    tmp,
                )
        if train.patience > 0 and stale >= train.patience:
            break
    if bar is not None:
        bar.close()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        emb = model.mobility().cpu().numpy().astype(np.float32)
    cols = [f"{EMBEDDING_PREFIX}{i}" for i in range(emb.shape[1])]
    embeddings = pd.DataFrame(emb, index=dataset.cell_ids, columns=cols)
    hist = pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", "seconds"])
    result = TrainResult(
        embeddings,
        hist,
        best[1],
        time.perf_counter() - t_start,
        line_res.seconds,
        line_res.samples_per_second,
        modalities,
    )
    if out is not None and is_main():
        _write_run(out, model, result, train, line, sampling, ratio, dims)
    return result


def _write_run(
    out: Path,
    model,
    result: TrainResult,
    train: TrainConfig,
    line: LineConfig,
    sampling: str,
    ratio: float,
    dims: dict[str, int],
) -> None:
    torch = import_optional("torch")
    ckpt = out / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    config = {
        "train": asdict(train),
        "line": asdict(line),
        "sampling": sampling,
        "ratio": ratio,
        "feature_dims": dims,
        "n_cells": int(result.embeddings.shape[0]),
        "best_epoch": result.best_epoch,
        "modalities": result.modalities,
    }
    with atomic_path(ckpt / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    with atomic_path(out / "loss_log.csv") as tmp:
        result.history.to_csv(tmp, index=False)
    if len(result.history):
        plot_loss_curve(result.history, out / "loss_curve.png")


def plot_loss_curve(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


__all__ = ["TrainResult", "train_mobclip"]
