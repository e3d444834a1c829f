"""Similar places: how close each cell (or polygon) is, in embedding space, to one or more reference places.

The score is the cosine similarity to the reference direction: the mean of the references' unit vectors, so each
reference counts equally whatever its norm, and the ranking is the ranking by mean cosine similarity to the
references. ``SimilarityIndex`` normalises the matrix once (float32); each query is then one matrix-vector product,
which is what lets the desktop map tool answer a click on 100,000 cells at once and the library rank 1,000,000
cells in well under a second. numpy and pandas only: this runs inside QGIS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError


@dataclass
class SimilarityIndex:
    """Unit-length float32 rows of an embedding matrix, computed once for many queries."""

    unit: np.ndarray  # (n, d) float32; zero rows where the input had a NaN or a zero vector
    valid: np.ndarray  # (n,) bool: rows that have an embedding
    mean: np.ndarray | None  # subtracted before normalising (``center=True``), else None

    @classmethod
    def from_values(cls, values: np.ndarray, *, center: bool = False) -> SimilarityIndex:
        """Index the rows of ``values`` (n, d). ``center`` subtracts the mean embedding first, which spreads the
        scores when every embedding shares a large common component (all cosines near 1)."""
        x = np.array(values, dtype=np.float32, copy=True)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise InvalidInputError(f"similarity needs a non-empty (rows, dimensions) matrix, got shape {x.shape}")
        valid = np.isfinite(x).all(axis=1)
        if not valid.any():
            raise InvalidInputError("no row has a complete embedding: every row holds a missing (NaN) value")
        mean = None
        if center:
            mean = x[valid].mean(axis=0, dtype=np.float64).astype(np.float32)
            x -= mean
        x[~valid] = 0.0
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        valid &= norms > 0
        x /= np.where(valid, norms, 1.0)[:, None]
        x[~valid] = 0.0
        return cls(x, valid, mean)

    @property
    def size(self) -> int:
        return int(self.unit.shape[0])

    def to_unit(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors from outside the index (e.g. a reference's embedding) in the index's space, unit length."""
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if v.shape[1] != self.unit.shape[1]:
            raise InvalidInputError(
                f"reference embeddings have {v.shape[1]} dimensions, the searched ones {self.unit.shape[1]}: "
                "use references from the same model"
            )
        v = v[np.isfinite(v).all(axis=1)]
        if self.mean is not None:
            v = v - self.mean
        norms = np.linalg.norm(v, axis=1)
        return v[norms > 0] / norms[norms > 0, None]

    def direction(self, *, rows=None, vectors=None) -> np.ndarray:
        """The reference direction: the normalised mean of the references' unit vectors (rows of the index and/or
        outside vectors). Raises when no reference has an embedding."""
        parts = []
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64).ravel()
            if rows.size and (rows.min() < 0 or rows.max() >= self.size):
                raise InvalidInputError(f"reference rows must lie in 0..{self.size - 1}")
            parts.append(self.unit[rows[self.valid[rows]]])
        if vectors is not None:
            parts.append(self.to_unit(vectors))
        refs = np.concatenate(parts) if parts else np.empty((0, self.unit.shape[1]), np.float32)
        if refs.shape[0] == 0:
            raise InvalidInputError(
                "no reference has an embedding: choose reference places that lie on cells (or features) of the "
                "embedding table"
            )
        mean = refs.mean(axis=0, dtype=np.float64)
        norm = np.linalg.norm(mean)
        if norm == 0:
            raise InvalidInputError("the references point in opposite directions (their mean is zero): pick fewer")
        return (mean / norm).astype(np.float32)

    def similarity(self, direction: np.ndarray) -> np.ndarray:
        """Cosine similarity (float32) of every row to a unit ``direction``; NaN where a row has no embedding."""
        scores = self.unit @ np.asarray(direction, dtype=np.float32)
        scores[~self.valid] = np.nan
        return scores


def top_rows(scores: np.ndarray, n: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``n`` highest finite scores, best first (ties: lower position first), skipping ``exclude``."""
    s = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float64)
    if exclude is not None:
        s[exclude] = -np.inf
    available = int(np.isfinite(s).sum())
    n = max(0, min(int(n), available))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-s, n - 1)[:n] if n < s.size else np.arange(s.size)
    order = np.lexsort((part, -s[part]))
    return part[order].astype(np.int64)


@dataclass
class SimilarPlaces:
    """Similarity of every row to the reference direction, the references, and the ranking of the others."""

    ids: pd.Index  # row ids (hex h3_cell, or feature positions)
    similarity: np.ndarray  # float32, NaN where a row has no embedding
    is_reference: np.ndarray  # bool
    rank: np.ndarray  # int: 1 = most similar non-reference row; 0 for references and rows without embedding
    top: pd.DataFrame  # the top-N non-reference rows: rank, id, similarity

    def frame(self) -> pd.DataFrame:
        """One row per id: similarity, rank (NULL-able as 0) and is_reference."""
        return pd.DataFrame(
            {"similarity": self.similarity, "rank": self.rank, "is_reference": self.is_reference}, index=self.ids
        )


def similar_places(
    values: np.ndarray,
    *,
    reference_rows=None,
    reference_vectors=None,
    ids=None,
    top_n: int = 10,
    center: bool = False,
    exclude_references: bool = True,
    index: SimilarityIndex | None = None,
) -> SimilarPlaces:
    """Cosine similarity of every row of ``values`` to the mean reference direction, and the top ``top_n``.

    References are rows of ``values`` (``reference_rows``: positions) and/or embeddings from elsewhere
    (``reference_vectors``). References are left out of the ranking unless ``exclude_references`` is False. Pass a
    prebuilt ``index`` to answer many queries over the same matrix.
    """
    if index is None:
        index = SimilarityIndex.from_values(values, center=center)
    n = index.size
    ids = pd.RangeIndex(n, name="row") if ids is None else pd.Index(ids)
    if len(ids) != n:
        raise InvalidInputError(f"{len(ids)} ids for {n} rows")
    direction = index.direction(rows=reference_rows, vectors=reference_vectors)
    scores = index.similarity(direction)
    is_ref = np.zeros(n, dtype=bool)
    if reference_rows is not None:
        is_ref[np.asarray(reference_rows, dtype=np.int64).ravel()] = True
    ranked = top_rows(scores, n, exclude=is_ref if exclude_references else None)
    rank = np.zeros(n, dtype=np.int64)
    rank[ranked] = np.arange(1, ranked.size + 1)
    head = ranked[: max(0, int(top_n))]
    top = pd.DataFrame({"rank": rank[head], ids.name or "id": ids[head], "similarity": scores[head]})
    return SimilarPlaces(ids, scores, is_ref, rank, top)


def similar_cells(
    table: pd.DataFrame,
    *,
    cells=None,
    geometries=None,
    top_n: int = 10,
    center: bool = False,
    exclude_references: bool = True,
) -> SimilarPlaces:
    """``similar_places`` over an embedding table (indexed by ``h3_cell``), with references given as hex cell ids
    (``cells``) and/or geometries in EPSG:4326 (``geometries``: WKB or shapely; a point takes the cell it lies in,
    a polygon every cell whose centre it holds, or its representative point's cell when it is smaller than a cell).
    """
    from ..embeddings import table_resolution
    from ..grid import polygons_to_cells, strings_to_cells

    rows = []
    asked = 0
    if cells is not None:
        ids = [str(c).strip() for c in np.atleast_1d(np.asarray(cells, dtype=object)) if c is not None]
        asked += len(ids)
        strings_to_cells(np.asarray(ids, dtype=object))  # a clear error for something that is not a cell id
        pos = table.index.get_indexer(ids)
        rows.append(pos[pos >= 0])
    if geometries is not None:
        geometries = list(geometries)
        asked += len(geometries)
        pairs = polygons_to_cells(geometries, table_resolution(table), fallback="point", cell_ids="str")
        pos = table.index.get_indexer(pairs[REGION_INDEX].to_numpy())
        rows.append(pos[pos >= 0])
    if cells is None and geometries is None:
        raise InvalidInputError("give reference places: cell ids, points or polygons")
    found = np.unique(np.concatenate(rows)) if rows else np.empty(0, np.int64)
    values = table.to_numpy(dtype=np.float32)
    if found.size == 0 or not np.isfinite(values[found]).all(axis=1).any():
        strings = table.index.to_numpy()
        raise InvalidInputError(
            f"none of the {asked} reference places lies on a cell of the embedding table that has an embedding "
            f"({len(table)} cells at resolution {table_resolution(table)}, e.g. {strings[0]}): choose references "
            "inside the embedded region"
        )
    return similar_places(
        values,
        reference_rows=found,
        ids=table.index.rename(REGION_INDEX),
        top_n=top_n,
        center=center,
        exclude_references=exclude_references,
    )
