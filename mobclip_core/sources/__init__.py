"""Readers for raw inputs, streaming where inputs can be large."""

from .records import iter_records, read_layer

__all__ = ["iter_records", "read_layer"]
