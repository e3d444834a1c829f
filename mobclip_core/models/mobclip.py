"""The MobCLIP module: a LightGCN mobility encoder (anchor) and per-modality heads in one 128-d space.

``MobCLIP.save(dir)`` writes ``model.pt`` (weights, including the graph and the feature standardisation) and
``config.json`` (the architecture) side by side; ``MobCLIP.load(dir)`` rebuilds the module from them alone, so the
cell embeddings of a saved model can be recomputed from the region dataset it was trained on.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..constants import DEFAULT_TEMPERATURES
from ..exceptions import CheckpointError
from ..io import atomic_path
from ..options import GraphEncoder, OutputTower

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"


def _init_linear(module: nn.Module) -> None:
    """Kaiming-uniform (ReLU gain) weights as in the public MobCLIP code."""
    if isinstance(module, nn.Linear):
        nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            bound = 1.0 / np.sqrt(module.in_features)
            nn.init.uniform_(module.bias, -bound, bound)


# notices torch and torch-geometric print on first use that say nothing about this run (a deprecation inside
# torch-geometric's own code, the sparse CSR "beta" notice, the invariant-check default): they cluttered the CLI's
# progress bar and the QGIS log
_TORCH_NOTICES = (
    r"`torch.jit.script` is deprecated",
    r"Sparse CSR tensor support is in beta",
    r"Sparse invariant checks are implicitly disabled",
)


@contextlib.contextmanager
def quiet_torch_geometric():
    """Silence ``_TORCH_NOTICES`` for the calls inside (warning filters restored after: nothing else changes)."""
    with warnings.catch_warnings():
        for message in _TORCH_NOTICES:
            warnings.filterwarnings("ignore", message=message)
        yield


class Standardise(nn.Module):
    """(x - mean) / sd with statistics frozen at training time, so a saved model embeds raw features."""

    def __init__(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("sd", sd.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.sd


def make_head(modality: str, in_dim: int, out_dim: int, hidden: int = 64) -> nn.Module:
    """Linear heads for POI text and image embeddings; a small MLP for demographic histograms."""
    if modality == "demographics":
        head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    else:
        head = nn.Linear(in_dim, out_dim)
    head.apply(_init_linear)
    return head


class _SparseProduct(torch.autograd.Function):
    """``adj_t @ x`` whose gradient is ``adj @ grad`` with ``adj`` (the transpose) already built: torch's own
    backward of a sparse CSR product transposes the matrix at every call, which costs about three products."""

    @staticmethod
    def forward(ctx, adj_t: torch.Tensor, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj_t @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.adj @ grad


class _SymmetricInfoNCE(torch.autograd.Function):
    """Both cross-entropies of the logits ``scale * a @ x.T`` (rows: a -> x, columns: x -> a, label = diagonal),
    computed over blocks of rows and recomputed in the backward pass, so memory is O(block x batch) instead of the
    several batch x batch arrays autograd keeps (8.6 GB per modality pair at the paper's batch of 20,480, measured).

    Every logit lies within +-``bound`` = scale x max|a| x max|x|. When exp(-2 bound) is safely above float32's
    underflow, one exp(logit - bound) per logit serves the row and the column sums at once (half the exp work of two
    log-softmaxes); otherwise row maxima and streamed column maxima keep it exact.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, block: int) -> torch.Tensor:
        n = a.shape[0]
        bound = float(scale) * float(a.norm(dim=1).max()) * float(x.norm(dim=1).max())
        shared = 2.0 * bound < 60.0
        row_lse = torch.empty(n, dtype=a.dtype, device=a.device)
        col_max = torch.full((n,), bound if shared else float("-inf"), dtype=a.dtype, device=a.device)
        col_sum = torch.zeros(n, dtype=a.dtype, device=a.device)
        for s in range(0, n, block):
            logits = scale * (a[s : s + block] @ x.T)
            if shared:
                e = torch.exp(logits - bound)
                row_lse[s : s + block] = torch.log(e.sum(dim=1)) + bound
                col_sum += e.sum(dim=0)
                continue
            row_lse[s : s + block] = torch.logsumexp(logits, dim=1)
            new_max = torch.maximum(col_max, logits.max(dim=0).values)  # column log-sum-exp, streamed
            col_sum = col_sum * torch.exp(col_max - new_max) + torch.exp(logits - new_max).sum(dim=0)
            col_max = new_max
        col_lse = col_max + torch.log(col_sum)
        diag = scale * (a * x).sum(dim=1)
        ctx.save_for_backward(a, x, scale, row_lse, col_lse)
        ctx.block, ctx.bound = block, (bound if shared else None)
        return torch.stack([(row_lse - diag).mean(), (col_lse - diag).mean()])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, x, scale, row_lse, col_lse = ctx.saved_tensors
        n, block, bound = a.shape[0], ctx.block, ctx.bound
        g_row, g_col = grad[0] / n, grad[1] / n
        if bound is not None:  # softmax = exp(logit - bound) / exp(lse - bound), one exp per logit
            row_w, col_w = g_row * torch.exp(bound - row_lse), g_col * torch.exp(bound - col_lse)
        grad_a, grad_x = torch.empty_like(a), torch.zeros_like(x)
        grad_scale = torch.zeros((), dtype=a.dtype, device=a.device)
        for s in range(0, n, block):
            e = min(s + block, n)
            logits = scale * (a[s:e] @ x.T)
            if bound is not None:
                g = torch.exp(logits - bound) * (row_w[s:e, None] + col_w[None, :])
            else:
                g = torch.exp(logits - row_lse[s:e, None]) * g_row + torch.exp(logits - col_lse[None, :]) * g_col
            rows = torch.arange(e - s, device=a.device)
            g[rows, rows + s] -= g_row + g_col  # the labels: d(-logit_ii) on the diagonal
            grad_a[s:e] = scale * (g @ x)
            grad_x += scale * (g.T @ a[s:e])
            grad_scale += (g * logits).sum() / scale
        return grad_a, grad_x, grad_scale.reshape(scale.shape), None


def symmetric_info_nce(a: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, block: int | None = None):
    """``[cross_entropy(logits, diag), cross_entropy(logits.T, diag)]`` for ``logits = scale * a @ x.T``, in
    blocks of rows (default: about 64 M logits at a time)."""
    block = block or max(1, (1 << 26) // max(a.shape[0], 1))
    return _SymmetricInfoNCE.apply(a, x, scale, int(block))


class MobilityEncoder(nn.Module):
    """LightGCN over the sampled graph (torch-geometric), node table initialised from LINE.

    Output is the *sum* of the layer embeddings E_0..E_K (paper eq. 3), with symmetric normalisation
    D^-1/2 A D^-1/2 of the weighted adjacency. ``kind="mlp"`` is the "w/o graph encoder" ablation: an MLP on
    the (fixed) LINE features. ``edge_dropout`` drops that share of edges at each training step (rescaling the
    rest), drawn from the encoder's own generator. ``trainable=False`` keeps the LINE node table fixed.
    """

    def __init__(
        self,
        init: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        *,
        layers: int = 2,
        kind: str = GraphEncoder.LIGHTGCN,
        out_dim: int = 128,
        disk_block_rows: int | None = None,
        edge_dropout: float = 0.0,
        trainable: bool = True,
        seed: int = 0,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        with quiet_torch_geometric():
            from torch_geometric.nn.conv.gcn_conv import gcn_norm
            from torch_geometric.nn.models import LightGCN

        self.kind = GraphEncoder(kind)
        self.layers = int(layers)
        self.edge_dropout = float(edge_dropout)
        self.generator = torch.Generator().manual_seed(int(seed))
        n, d = init.shape
        if normalized:  # a saved model: the weights are already D^-1/2 A D^-1/2
            norm_index, norm_weight = edge_index, edge_weight
        else:  # computed once; propagation then is a sparse matmul per layer
            norm_index, norm_weight = gcn_norm(edge_index, edge_weight, n, add_self_loops=False)
        self.register_buffer("norm_index", norm_index)
        self.register_buffer("norm_weight", norm_weight)
        self._adjacency = None
        self._disk = None
        if disk_block_rows:  # graphs beyond memory: the normalised adjacency lives memory-mapped on disk
            import scipy.sparse as sp

            from .outofcore import DiskAdjacency

            a = sp.coo_matrix((norm_weight.numpy(), (norm_index[1].numpy(), norm_index[0].numpy())), shape=(n, n))
            self._disk = DiskAdjacency.write(a.tocsr(), block_rows=disk_block_rows)
        if self.kind == GraphEncoder.LIGHTGCN:
            if d != out_dim:
                raise ValueError(f"LightGCN keeps the LINE width: LINE dim {d} must equal embedding_dim {out_dim}")
            self.gcn = LightGCN(n, d, num_layers=layers, alpha=torch.ones(layers + 1))
            for conv in self.gcn.convs:
                conv.normalize = False  # weights are already normalised
            with torch.no_grad():
                self.gcn.embedding.weight.copy_(init)
            self.gcn.embedding.weight.requires_grad_(trainable)
        else:
            self.register_buffer("features", init.clone())
            self.mlp = nn.Sequential(nn.Linear(d, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
            self.mlp.apply(_init_linear)

    @property
    def n_cells(self) -> int:
        return int(self.node_table().shape[0])

    @property
    def in_dim(self) -> int:
        """Width of the LINE node table."""
        return int(self.node_table().shape[1])

    def node_table(self) -> torch.Tensor:
        return self.gcn.embedding.weight if self.kind == GraphEncoder.LIGHTGCN else self.features

    def node_parameters(self) -> list[nn.Parameter]:
        """The node table (its own learning rate and weight decay can be set apart from the heads')."""
        if self.kind == GraphEncoder.LIGHTGCN and self.gcn.embedding.weight.requires_grad:
            return [self.gcn.embedding.weight]
        return []

    def adjacency_t(self) -> torch.Tensor:
        """Transposed normalised adjacency (rows = message targets) as a sparse CSR tensor, built once."""
        return self.adjacency_pair()[0]

    def adjacency_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(transposed adjacency, adjacency) as sparse CSR tensors: the product and its gradient. Built once, or
        per training step with ``edge_dropout`` (one mask for the step)."""
        from torch_geometric.utils import to_torch_csr_tensor

        n = self.n_cells
        if self.training and self.edge_dropout > 0:
            keep = torch.rand(self.norm_weight.shape, generator=self.generator) >= self.edge_dropout
            keep = keep.to(self.norm_weight.device)
            weight = self.norm_weight[keep] / (1.0 - self.edge_dropout)
            index = self.norm_index[:, keep]
            with quiet_torch_geometric():
                return (
                    to_torch_csr_tensor(index.flip(0), weight, size=(n, n)),
                    to_torch_csr_tensor(index, weight, size=(n, n)),
                )
        if self._adjacency is None or self._adjacency[0].device != self.norm_weight.device:
            with quiet_torch_geometric():
                self._adjacency = (
                    to_torch_csr_tensor(self.norm_index.flip(0), self.norm_weight, size=(n, n)),
                    to_torch_csr_tensor(self.norm_index, self.norm_weight, size=(n, n)),
                )
        return self._adjacency

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of Â^k x for k = 0..layers over this encoder's graph (LightGCN's propagation, alpha = 1)."""
        out = x
        if self._disk is not None:
            from .outofcore import propagate

            for _ in range(self.layers):
                x = propagate(self._disk, x)
                out = out + x
            return out
        adj_t, adj = self.adjacency_pair()
        for _ in range(self.layers):
            x = _SparseProduct.apply(adj_t, adj, x) if x.requires_grad else adj_t @ x
            out = out + x
        return out

    def forward(self) -> torch.Tensor:
        if self.kind == GraphEncoder.LIGHTGCN:
            return self.propagate(self.gcn.embedding.weight)
        return self.mlp(self.features)


class MobCLIP(nn.Module):
    """Mobility encoder + heads; ``loss`` is the symmetric InfoNCE of the paper (eq. 4-5), masked per modality.

    ``connected`` marks the cells that have mobility links: only they take part in the mobility terms of the loss
    and only their mobility tower enters the fused output (a cell without links has no mobility to speak of).
    """

    def __init__(
        self,
        mobility: MobilityEncoder,
        feature_dims: dict[str, int],
        *,
        embedding_dim: int = 128,
        demographics_hidden_dim: int = 64,
        temperatures: dict[str, float] | None = None,
        learnable_temperature: bool = False,
        anchor: str = "mobility",
        connected: torch.Tensor | None = None,
        standardisation: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        propagate_modalities: bool = False,
    ) -> None:
        super().__init__()
        self.mobility = mobility
        self.propagate_modalities = bool(propagate_modalities)
        stats = standardisation or {m: (torch.zeros(d), torch.ones(d)) for m, d in feature_dims.items()}
        self.heads = nn.ModuleDict(
            {
                m: nn.Sequential(Standardise(*stats[m]), make_head(m, d, embedding_dim, demographics_hidden_dim))
                for m, d in feature_dims.items()
            }
        )
        temps = {**DEFAULT_TEMPERATURES, **(temperatures or {})}
        log_scale = torch.tensor([float(np.log(1.0 / temps[m])) for m in feature_dims], dtype=torch.float32)
        self.log_scale = nn.Parameter(log_scale, requires_grad=learnable_temperature)
        self.modalities = list(feature_dims)
        self.anchor = anchor
        if connected is None:
            connected = torch.ones(mobility.n_cells, dtype=torch.bool)
        self.register_buffer("connected", connected.bool())
        self.arch = {
            "feature_dims": dict(feature_dims),
            "embedding_dim": int(embedding_dim),
            "demographics_hidden_dim": int(demographics_hidden_dim),
            "temperatures": {m: float(temps[m]) for m in feature_dims},
            "learnable_temperature": bool(learnable_temperature),
            "anchor": anchor,
            "n_cells": mobility.n_cells,
            "graph_encoder": str(mobility.kind),
            "layers": mobility.layers,
            "line_dim": mobility.in_dim,
            "propagate_modalities": self.propagate_modalities,
        }

    def embed_all(
        self,
        features: dict[str, torch.Tensor],
        idx: torch.Tensor | None = None,
        present: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """L2-normalised embeddings for mobility and each modality, of the cells in ``idx`` (default: all).

        With ``propagate_modalities`` each modality's head output (zero where the cell lacks it, so ``present`` is
        needed) is propagated over the encoder's graph like the mobility tower, so every tower sees the cell's
        graph neighbourhood.
        """
        sel = slice(None) if idx is None else idx
        if self.propagate_modalities and self.mobility.kind == GraphEncoder.LIGHTGCN:
            # one sparse product carries every tower (the same graph, one edge-dropout mask per step)
            towers = [self.mobility.node_table()]
            for m in self.modalities:
                towers.append(self.heads[m](features[m]) * present[m].to(features[m].dtype)[:, None])
            widths = [t.shape[1] for t in towers]
            parts = self.mobility.propagate(torch.cat(towers, dim=1)).split(widths, dim=1)
            return {name: F.normalize(p[sel], dim=1) for name, p in zip(["mobility", *self.modalities], parts)}
        out = {"mobility": F.normalize(self.mobility()[sel], dim=1)}
        for m in self.modalities:
            if self.propagate_modalities:
                h = self.heads[m](features[m]) * present[m].to(features[m].dtype)[:, None]
                out[m] = F.normalize(self.mobility.propagate(h)[sel], dim=1)
            else:
                out[m] = F.normalize(self.heads[m](features[m][sel]), dim=1)
        return out

    def tower_present(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Which cells have each tower: mobility where linked; a modality where present (or, when propagated,
        where any cell within the propagation's reach has it)."""
        out = {"mobility": self.connected}
        for m in self.modalities:
            p = present[m]
            if self.propagate_modalities:
                with torch.no_grad():
                    p = self.mobility.propagate(p.float()[:, None].abs())[:, 0] > 0
            out[m] = p
        return out

    def loss(
        self, idx: torch.Tensor, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Mean of the 2 x M cross-entropies (anchor -> X and X -> anchor) over the cells in ``idx``.

        Cells lacking modality X (or, for mobility, any link) are masked out of X's terms; a modality with fewer
        than two cells in the batch contributes nothing.
        """
        emb = self.embed_all(features, idx, present)
        has = self.tower_present(present)
        terms = []
        scale_of = dict(zip(self.modalities, self.log_scale.exp()))
        anchor = self.anchor
        others = [m for m in ["mobility", *self.modalities] if m != anchor]
        for m in others:
            mask = has[m][idx] & has[anchor][idx]
            if int(mask.sum()) < 2:
                continue
            a, x = emb[anchor][mask], emb[m][mask]
            scale = scale_of[m if m != "mobility" else anchor]
            terms += list(symmetric_info_nce(a, x, scale))
        if not terms:  # e.g. a tiny last batch: a zero that still reaches every parameter (DDP needs the graph)
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return torch.stack(terms).mean()

    def forward(self, idx, features, present):
        """The training loss (so DistributedDataParallel can wrap the module)."""
        return self.loss(idx, features, present)

    @torch.no_grad()
    def cell_embeddings(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor], output: str = OutputTower.FUSED
    ) -> torch.Tensor:
        """The model's output for every cell.

        ``mobility``: the mobility tower, unnormalised (the paper's output). ``fused``: the mean of the aligned,
        L2-normalised towers each cell has (mobility where it has links, each modality where present). A cell
        with neither gets zeros.
        """
        output = OutputTower(output)
        if output == OutputTower.MOBILITY:
            return self.mobility()
        emb = self.embed_all(features, present=present)
        has = self.tower_present(present)
        total = torch.zeros_like(emb["mobility"])
        count = torch.zeros(total.shape[0], 1, device=total.device)
        for name, e in emb.items():
            w = has[name].float()[:, None]
            total += w * e
            count += w
        return total / count.clamp(min=1.0)

    def embed_dataset(
        self, dataset, output: str = OutputTower.FUSED, context_m=(), context_weight: float = 0.5
    ) -> np.ndarray:
        """Cell embeddings of the region dataset the model was trained on (float32, dataset cell order), with the
        neighbourhood context of ``[train] context_m`` (``training.data.neighbourhood_context``) as exported."""
        from ..grid import cell_resolution
        from ..training.data import context_rings, neighbourhood_context

        if dataset.cells.size != self.mobility.n_cells:
            raise CheckpointError(
                f"the model was trained on {self.mobility.n_cells} cells, the dataset has {dataset.cells.size}: "
                "embed the dataset the model was trained on"
            )
        device = self.connected.device
        features, present = {}, {}
        for m in self.modalities:
            x, p = dataset.feature_matrix(m)
            features[m] = torch.from_numpy(x).to(device)
            present[m] = torch.from_numpy(p.copy()).to(device)
        emb = self.cell_embeddings(features, present, output).cpu().numpy().astype(np.float32)
        rings = context_rings(cell_resolution(dataset.cells[0]), context_m)
        return neighbourhood_context(dataset.cells, emb, rings, context_weight)

    # -- persistence ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """``model.pt`` (state dict) and ``config.json`` (architecture + ``extra``), each written atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / MODEL_FILE) as tmp:
            torch.save(self.state_dict(), tmp)
        with atomic_path(directory / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps({"model": self.arch, **(extra or {})}, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> MobCLIP:
        """Rebuild a model written by ``save`` (in eval mode)."""
        directory = Path(directory)
        cfg_path, weights = directory / CONFIG_FILE, directory / MODEL_FILE
        if not cfg_path.exists() or not weights.exists():
            raise CheckpointError(f"{directory} holds no saved MobCLIP model ({CONFIG_FILE} and {MODEL_FILE})")
        try:
            arch = json.loads(cfg_path.read_text())["model"]
            state = torch.load(weights, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch and json raise several types for damaged files
            raise CheckpointError(f"{directory}: the saved model cannot be read ({exc}); train it again") from exc
        n, kind = arch["n_cells"], arch["graph_encoder"]
        encoder = MobilityEncoder(
            torch.zeros(n, arch["line_dim"]),
            state["mobility.norm_index"],
            state["mobility.norm_weight"],
            layers=arch["layers"],
            kind=kind,
            out_dim=arch["embedding_dim"],
            normalized=True,
        )
        stats = {m: (state[f"heads.{m}.0.mean"], state[f"heads.{m}.0.sd"]) for m in arch["feature_dims"]}
        model = cls(
            encoder,
            arch["feature_dims"],
            embedding_dim=arch["embedding_dim"],
            demographics_hidden_dim=arch["demographics_hidden_dim"],
            temperatures=arch["temperatures"],
            learnable_temperature=arch["learnable_temperature"],
            anchor=arch["anchor"],
            connected=state["connected"],
            standardisation=stats,
            propagate_modalities=arch.get("propagate_modalities", False),
        )
        model.load_state_dict(state)
        return model.to(map_location).eval()
