"""The MobCLIP module: a LightGCN mobility encoder (anchor) and per-modality heads in one 128-d space."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..constants import DEFAULT_TEMPERATURES


def _init_linear(module: nn.Module) -> None:
    """Kaiming-uniform (ReLU gain) weights as in the public MobCLIP code."""
    if isinstance(module, nn.Linear):
        nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            bound = 1.0 / np.sqrt(module.in_features)
            nn.init.uniform_(module.bias, -bound, bound)


def make_head(modality: str, in_dim: int, out_dim: int, hidden: int = 64) -> nn.Module:
    """Linear heads for POI text and image embeddings; a small MLP for demographic histograms."""
    if modality == "demographics":
        head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    else:
        head = nn.Linear(in_dim, out_dim)
    head.apply(_init_linear)
    return head


class MobilityEncoder(nn.Module):
    """LightGCN over the sampled graph (torch-geometric), node table initialised from LINE and trainable.

    Output is the *sum* of the layer embeddings E_0..E_K (paper eq. 3), with symmetric normalisation
    D^-1/2 A D^-1/2 of the weighted adjacency. ``kind="mlp"`` is the "w/o graph encoder" ablation: an MLP on
    the (fixed) LINE features.
    """

    def __init__(
        self,
        init: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        *,
        layers: int = 2,
        kind: str = "lightgcn",
        out_dim: int = 128,
        disk_block_rows: int | None = None,
    ) -> None:
        super().__init__()
        from torch_geometric.nn.conv.gcn_conv import gcn_norm
        from torch_geometric.nn.models import LightGCN

        self.kind = kind
        n, d = init.shape
        # D^-1/2 A D^-1/2 is computed once; propagation then is a sparse matmul per layer
        norm_index, norm_weight = gcn_norm(edge_index, edge_weight, n, add_self_loops=False)
        self.register_buffer("norm_index", norm_index)
        self.register_buffer("norm_weight", norm_weight)
        self._adj_t = None
        self._disk = None
        if disk_block_rows:  # graphs beyond memory: the normalised adjacency lives memory-mapped on disk
            import scipy.sparse as sp

            from .outofcore import DiskAdjacency

            a = sp.coo_matrix((norm_weight.numpy(), (norm_index[1].numpy(), norm_index[0].numpy())), shape=(n, n))
            self._disk = DiskAdjacency.write(a.tocsr(), block_rows=disk_block_rows)
        if kind == "lightgcn":
            if d != out_dim:
                raise ValueError(f"LightGCN keeps the LINE width: LINE dim {d} must equal embedding_dim {out_dim}")
            self.gcn = LightGCN(n, d, num_layers=layers, alpha=torch.ones(layers + 1))
            for conv in self.gcn.convs:
                conv.normalize = False  # weights are already normalised
            with torch.no_grad():
                self.gcn.embedding.weight.copy_(init)
        else:
            self.register_buffer("features", init.clone())
            self.mlp = nn.Sequential(nn.Linear(d, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
            self.mlp.apply(_init_linear)

    def adjacency_t(self) -> torch.Tensor:
        """Transposed normalised adjacency (rows = message targets) as a sparse CSR tensor, built once."""
        if self._adj_t is None or self._adj_t.device != self.norm_weight.device:
            from torch_geometric.utils import to_torch_csr_tensor

            n = self.gcn.embedding.num_embeddings
            self._adj_t = to_torch_csr_tensor(self.norm_index.flip(0), self.norm_weight, size=(n, n))
        return self._adj_t

    def forward(self) -> torch.Tensor:
        if self.kind == "lightgcn" and self._disk is not None:
            from .outofcore import propagate

            x = self.gcn.embedding.weight
            out = x
            for _ in range(len(self.gcn.convs)):  # sum of E_0..E_K, as LightGCN with alpha = 1
                x = propagate(self._disk, x)
                out = out + x
            return out
        if self.kind == "lightgcn":
            return self.gcn.get_embedding(self.adjacency_t())
        return self.mlp(self.features)


class MobCLIP(nn.Module):
    """Mobility encoder + heads; ``loss`` is the symmetric InfoNCE of the paper (eq. 4-5), masked per modality."""

    def __init__(
        self,
        mobility: MobilityEncoder,
        feature_dims: dict[str, int],
        *,
        embedding_dim: int = 128,
        demo_hidden_dim: int = 64,
        temperatures: dict[str, float] | None = None,
        learnable_temperature: bool = False,
        anchor: str = "mobility",
    ) -> None:
        super().__init__()
        self.mobility = mobility
        self.heads = nn.ModuleDict(
            {m: make_head(m, d, embedding_dim, demo_hidden_dim) for m, d in feature_dims.items()}
        )
        temps = {**DEFAULT_TEMPERATURES, **(temperatures or {})}
        log_scale = torch.tensor([float(np.log(1.0 / temps[m])) for m in feature_dims], dtype=torch.float32)
        self.log_scale = nn.Parameter(log_scale, requires_grad=learnable_temperature)
        self.modalities = list(feature_dims)
        self.anchor = anchor

    def embed_all(self, features: dict[str, torch.Tensor], idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """L2-normalised embeddings for mobility and each modality, of the cells in ``idx`` (default: all)."""
        sel = slice(None) if idx is None else idx
        out = {"mobility": F.normalize(self.mobility()[sel], dim=1)}
        for m in self.modalities:
            out[m] = F.normalize(self.heads[m](features[m][sel]), dim=1)
        return out

    def loss(
        self, idx: torch.Tensor, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Mean of the 2 x M cross-entropies (anchor -> X and X -> anchor) over the cells in ``idx``.

        Cells lacking modality X are masked out of X's terms; a modality with fewer than two cells in the
        batch contributes nothing.
        """
        emb = self.embed_all(features, idx)
        terms = []
        scale_of = dict(zip(self.modalities, self.log_scale.exp()))
        anchor = self.anchor
        others = [m for m in ["mobility", *self.modalities] if m != anchor]
        for m in others:
            mask = torch.ones_like(idx, dtype=torch.bool)
            for name in (m, anchor):
                if name != "mobility":
                    mask &= present[name][idx]
            if int(mask.sum()) < 2:
                continue
            a, x = emb[anchor][mask], emb[m][mask]
            scale = scale_of[m if m != "mobility" else anchor]
            logits = scale * a @ x.T
            labels = torch.arange(a.shape[0], device=a.device)
            terms += [F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)]
        if not terms:  # e.g. a tiny last batch: a zero that still reaches every parameter (DDP needs the graph)
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return torch.stack(terms).mean()

    def forward(self, idx, features, present):
        """The training loss (so DistributedDataParallel can wrap the module)."""
        return self.loss(idx, features, present)
