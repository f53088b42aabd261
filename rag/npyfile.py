"""Rows of a stored .npy array read on demand with pread, without mapping the file.

A memory-mapped file counts every page a query touches, plus the kernel's read-ahead around it,
in the process's resident memory: at a million chunks, scattered reads of sentence vectors and BM25
postings grew a server's RSS from 2.5 to 7.4 GB in 100 queries. Reads through the page cache stay
out of RSS (the kernel still caches them, and can drop them under pressure); a query reads a few
hundred short runs of rows, well under a millisecond.
"""
from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path

import numpy as np


class NpyFile:
    """A read-only 1-D or 2-D .npy array on disk, indexed like an array along its first axis."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran or dtype.hasobject or len(shape) not in (1, 2):
            raise ValueError(f"{self.path}: not a C-ordered 1-D or 2-D numeric array")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self._row_bytes = dtype.itemsize * (shape[1] if len(shape) == 2 else 1)
        expected = self._offset + self._row_bytes * shape[0]
        if os.path.getsize(self.path) != expected:
            raise ValueError(f"{self.path}: {os.path.getsize(self.path)} bytes, expected {expected}")
        # Open while any reader holds the array (it may outlive its snapshot's directory): `close()`
        # releases the file, and so does the last reference going away.
        self._fd = os.open(self.path, os.O_RDONLY)
        self._release = weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = max(stop - start, 0)
        size = count * self._row_bytes
        data = os.pread(self._fd, size, self._offset + start * self._row_bytes) if size else b""
        if len(data) != size:
            raise OSError(f"{self.path}: short read ({len(data)} of {size} bytes)")
        return np.frombuffer(data, dtype=self.dtype).reshape((count,) + self.shape[1:])

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self._read(start, stop)[::step]
            return self._read(start, stop)
        if isinstance(key, (int, np.integer)):
            row = int(key) + (n if key < 0 else 0)
            if not 0 <= row < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._read(row, row + 1)[0]
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row out of range for {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        return self._gather(rows)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows in any order: one read per run of consecutive rows."""
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) > 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(ordered)]))
        for a, b in zip(starts.tolist(), ends.tolist()):
            first, last = int(ordered[a]), int(ordered[b - 1])
            block = self._read(first, last + 1)
            out[order[a:b]] = block[ordered[a:b] - first]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self._read(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype)

    def close(self) -> None:
        self._release()


def write_npy(path: str | Path, shape: tuple[int, ...], dtype, blocks) -> NpyFile:
    """Write a .npy file from `blocks` (arrays whose rows make up `shape`, in order) with plain
    writes, and open it as an NpyFile. A large output (a merge's sentence vectors) is built this way
    rather than in a memory-mapped file, whose written pages count in the writer's resident memory."""
    dtype = np.dtype(dtype)
    path = Path(path)
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                 "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype)
            f.write(block.tobytes())
            written += len(block)
    if written != shape[0]:
        raise ValueError(f"{path}: {written} rows written, {shape[0]} expected")
    return NpyFile(path)


def save_npy(path: str | Path, array, dtype) -> None:
    """Save `array` as a .npy of `dtype`; an NpyFile already of that dtype (a merge's output, read on
    demand) is copied by the kernel rather than read into memory and written again."""
    if isinstance(array, NpyFile) and array.dtype == np.dtype(dtype):
        shutil.copyfile(array.path, path)
    else:
        np.save(path, np.asarray(array, dtype=dtype))
