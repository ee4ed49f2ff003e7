"""Reader for CTranslate2's `model.bin`, so converting weights needs no CTranslate2 build.

The layout is the one `ctranslate2/specs/model_spec.py` (`ModelSpec._serialize`) writes,
binary version 6, little-endian: `u32 version`, `string spec name`, `u32 revision`,
`u32 count`, then per variable `string name`, `u8 rank`, `u32 × rank shape`, `u8 dtype`,
`u32 byte count`, raw data; then `u32 alias count` and `(string alias, string target)`
pairs. A string is `u16 length` (NUL included), the UTF-8 bytes and a NUL. Tensors are
read lazily from a memory map, so reading a 3 GB large-v3 does not need 3 GB twice.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from whisperfarm.errors import EngineError

SUPPORTED_VERSIONS = (5, 6)
"""Versions 5 and 6 share the layout above (6 only added dtypes written by newer specs)."""
DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
"""dtype ids in the order of CTranslate2's `DataType` enum (include/ctranslate2/types.h)."""

Array = npt.NDArray[np.generic]


class Ct2FormatError(EngineError):
    """The file is not a CTranslate2 model this reader understands."""


@dataclass
class Ct2Model:
    """The variables of one `model.bin`, by name (aliases resolved to their targets)."""

    spec: str
    revision: int
    variables: dict[str, Array] = field(default_factory=dict)

    def get(self, name: str) -> Array:
        try:
            return self.variables[name]
        except KeyError:
            raise Ct2FormatError(f"{self.spec} model has no variable {name!r}") from None

    def float32(self, name: str) -> npt.NDArray[np.float32]:
        """A weight as float32, dequantizing int8/int16 with its `<name>_scale` if present.

        CTranslate2 quantizes row by row: `q = round(w * scale)`, so `w = q / scale`.
        """
        value = self.get(name)
        scale_name = name + "_scale"
        if value.dtype in (np.int8, np.int16) and scale_name in self.variables:
            scale = self.variables[scale_name].astype(np.float32)
            shaped = scale.reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim else scale
            return (value.astype(np.float32) / shaped).astype(np.float32)
        return value.astype(np.float32)


class _Cursor:
    """Sequential little-endian reads over a buffer, with errors that name the offset."""

    def __init__(self, buffer: mmap.mmap | bytes) -> None:
        self.buffer = buffer
        self.offset = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.buffer):
            raise Ct2FormatError(f"model.bin is truncated at byte {self.offset}")
        values = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += size
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self.buffer[self.offset : self.offset + length])
        self.offset += length
        if len(raw) != length or not raw.endswith(b"\0"):
            raise Ct2FormatError(f"bad string at byte {self.offset - length}")
        return raw[:-1].decode("utf-8")

    def array(self, dtype_id: int, shape: tuple[int, ...], nbytes: int) -> Array:
        if dtype_id >= len(DTYPES):
            raise Ct2FormatError(f"unknown dtype id {dtype_id} at byte {self.offset}")
        name = DTYPES[dtype_id]
        raw_dtype = np.dtype("<u2") if name == "bfloat16" else np.dtype(name).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if count * raw_dtype.itemsize != nbytes or self.offset + nbytes > len(self.buffer):
            raise Ct2FormatError(f"variable at byte {self.offset}: size does not match shape")
        data = np.frombuffer(self.buffer, dtype=raw_dtype, count=count, offset=self.offset)
        self.offset += nbytes
        if name == "bfloat16":  # numpy has no bfloat16: widen the top 16 bits to float32
            data = (data.astype(np.uint32) << 16).view(np.float32)
        return data.reshape(shape)


def _open(path: Path) -> tuple[_Cursor, str, int, int]:
    """Map `path` and read its header: the cursor at the first variable, the spec name,
    its revision and the number of variables."""
    with open(path, "rb") as file:
        try:
            buffer: mmap.mmap | bytes = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            buffer = b""
    cursor = _Cursor(buffer)
    (version,) = cursor.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise Ct2FormatError(f"{path}: binary version {version} (supported: 5, 6)")
    spec = cursor.string()
    (revision,) = cursor.unpack("I")
    (count,) = cursor.unpack("I")
    return cursor, spec, revision, count


def _variables(cursor: _Cursor, count: int) -> Iterator[tuple[str, tuple[int, ...], int, int]]:
    """Each variable's name, shape, dtype id and data size; the caller reads or skips
    the `nbytes` of data at the cursor before taking the next."""
    for _ in range(count):
        name = cursor.string()
        (rank,) = cursor.unpack("B")
        shape = cursor.unpack("I" * rank)
        dtype_id, nbytes = cursor.unpack("B") + cursor.unpack("I")
        yield name, shape, dtype_id, nbytes


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every variable's shape, without reading (or widening) any weight: what the batch
    budget needs to know of a model CTranslate2 has already loaded."""
    cursor, _, _, count = _open(path)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape, _, nbytes in _variables(cursor, count):
        shapes[name] = shape
        cursor.offset += nbytes
    return shapes


def read_model(path: Path) -> Ct2Model:
    """Parse `path` (a `model.bin`); raises `Ct2FormatError` on anything unexpected."""
    cursor, spec, revision, count = _open(path)
    model = Ct2Model(spec, revision)
    for name, shape, dtype_id, nbytes in _variables(cursor, count):
        model.variables[name] = cursor.array(dtype_id, shape, nbytes)
    (aliases,) = cursor.unpack("I")
    for _ in range(aliases):
        alias, target = cursor.string(), cursor.string()
        model.variables[alias] = model.get(target)
    return model
