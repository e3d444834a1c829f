"""LightGCN propagation with the graph on disk: memory bounded by one block of rows, not by the edges.

The normalised adjacency D^-1/2 A D^-1/2 is written once as CSR arrays (``.npy``) and memory-mapped; a product
Â·X is computed block by block of rows, so only one block's edges are in memory at a time. Â is symmetric, so the
gradient of Â·X is Â·grad and the same blocked product serves backward.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from .._optional import import_optional


class DiskAdjacency:
    """A symmetric sparse matrix stored as memory-mapped CSR arrays, multiplied block by block."""

    def __init__(self, directory: str | Path, block_rows: int = 65536) -> None:
        d = Path(directory)
        self.indptr = np.load(d / "indptr.npy", mmap_mode="r")
        self.indices = np.load(d / "indices.npy", mmap_mode="r")
        self.data = np.load(d / "data.npy", mmap_mode="r")
        self.n = self.indptr.size - 1
        self.block_rows = int(block_rows)

    @classmethod
    def write(cls, adjacency, directory: str | Path | None = None, block_rows: int = 65536) -> DiskAdjacency:
        """Store a scipy sparse matrix (assumed symmetric) and open it memory-mapped."""
        import scipy.sparse as sp

        owned = directory is None
        d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="mobclip-adj-"))
        d.mkdir(parents=True, exist_ok=True)
        a = sp.csr_matrix(adjacency)
        np.save(d / "indptr.npy", a.indptr.astype(np.int64))
        np.save(d / "indices.npy", a.indices.astype(np.int64))
        np.save(d / "data.npy", a.data.astype(np.float32))
        disk = cls(d, block_rows)
        if owned:  # a temporary copy goes when the object does
            weakref.finalize(disk, shutil.rmtree, str(d), True)
        return disk

    def matmul(self, x):
        """Â @ x for a dense torch tensor x (n, d), one block of rows at a time."""
        torch = import_optional("torch")
        out = torch.empty_like(x)
        for r0 in range(0, self.n, self.block_rows):
            r1 = min(r0 + self.block_rows, self.n)
            lo, hi = int(self.indptr[r0]), int(self.indptr[r1])
            crow = torch.from_numpy(np.asarray(self.indptr[r0 : r1 + 1]) - lo)
            col = torch.from_numpy(np.asarray(self.indices[lo:hi]))
            val = torch.from_numpy(np.asarray(self.data[lo:hi])).to(x.dtype)
            block = torch.sparse_csr_tensor(crow, col, val, size=(r1 - r0, self.n)).to(x.device)
            out[r0:r1] = block @ x
        return out


def propagate(adjacency: DiskAdjacency, x):
    """Differentiable Â @ x with a DiskAdjacency (symmetric, so backward is the same product)."""
    torch = import_optional("torch")

    class _SymmetricSpMM(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            return adjacency.matmul(inp)

        @staticmethod
        def backward(ctx, grad):
            return adjacency.matmul(grad)

    return _SymmetricSpMM.apply(x)
