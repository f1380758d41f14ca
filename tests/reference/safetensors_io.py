"""A small, strict safetensors reader and writer in numpy.

Format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte after the header),
an optional "__metadata__" entry, then the data. Only F32, BF16 and F16 can be read as numbers;
other dtypes are known by size so that a file holding them still parses (and the caller can
reject the tensor by name).
"""

import json
import os

import numpy as np

# Element sizes of the dtypes the format defines; a header naming anything else is corrupt.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}
FLOAT_DTYPES = ("F32", "BF16", "F16")


class SafetensorsError(Exception):
    """A file that is not valid safetensors, or a tensor that is not what the caller asked for."""


def bf16_bits_to_f32(bits):
    """BF16 is the top half of an F32: shifting the 16 bits up is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(values):
    """Round F32 to the nearest BF16, ties to even (what torch's .to(bfloat16) does)."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    # Rounding could carry a NaN's payload into the exponent; keep NaN a (quiet) NaN.
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)


def encode(values, dtype):
    """Raw little-endian bytes of `values` stored as `dtype` (F32, BF16, F16, or I32 for tests)."""
    values = np.asarray(values)
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(values.astype(np.float32)).astype("<u2").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    if dtype == "I32":
        return values.astype("<i4").tobytes()
    raise ValueError(f"cannot encode dtype {dtype}")


def save(path, tensors, metadata=None):
    """Writes `tensors`, a dict name -> (dtype, shape, raw bytes), in insertion order.

    The JSON header is padded with spaces to a multiple of 8 bytes so that the data starts
    aligned, as the reference implementation does.
    """
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for _, _, data in tensors.values():
            f.write(data)


class SafetensorsFile:
    """An opened safetensors file: the header is parsed and checked, data is read on demand."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise SafetensorsError(f"{path}: truncated: {size} bytes, shorter than the "
                                       "8-byte header length")
            n = int.from_bytes(prefix, "little")
            if n > size - 8:
                raise SafetensorsError(f"{path}: truncated: header length {n} exceeds the "
                                       f"{size - 8} bytes after it")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: corrupt header: not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: corrupt header: not a JSON object")
        self._data_start = 8 + n
        data_size = size - self._data_start
        self.metadata = header.pop("__metadata__", None)
        self._entries = {}
        for name, entry in header.items():
            self._entries[name] = self._check_entry(name, entry, data_size)

    def _check_entry(self, name, entry, data_size):
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            valid = (dtype in DTYPE_SIZES and isinstance(shape, list)
                     and all(isinstance(d, int) and d >= 0 for d in shape)
                     and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise SafetensorsError(f"{self.path}: corrupt header: bad entry for tensor "
                                   f"'{name}': {json.dumps(entry)}")
        if end > data_size:
            raise SafetensorsError(f"{self.path}: truncated: tensor '{name}' needs data bytes "
                                   f"[{begin}, {end}) but the file holds {data_size}")
        expected = int(np.prod(shape, dtype=np.int64)) * DTYPE_SIZES[dtype]
        if end - begin != expected:
            raise SafetensorsError(f"{self.path}: corrupt header: tensor '{name}' of dtype "
                                   f"{dtype} and shape {shape} has {end - begin} bytes, "
                                   f"expected {expected}")
        return dtype, tuple(shape), begin, end

    def names(self):
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def info(self, name):
        """(dtype, shape) of a tensor."""
        dtype, shape, _, _ = self._entries[name]
        return dtype, shape

    def raw(self, name):
        """(dtype, shape, bytes) of a tensor, exactly as stored."""
        dtype, shape, begin, end = self._entries[name]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            return dtype, shape, f.read(end - begin)

    def read(self, name):
        """A floating-point tensor as float64."""
        if name not in self._entries:
            raise SafetensorsError(f"{self.path}: tensor '{name}' not found")
        dtype, shape, data = self.raw(name)
        if dtype == "F32":
            values = np.frombuffer(data, dtype="<f4")
        elif dtype == "BF16":
            values = bf16_bits_to_f32(np.frombuffer(data, dtype="<u2"))
        elif dtype == "F16":
            values = np.frombuffer(data, dtype="<f2")
        else:
            raise SafetensorsError(f"{self.path}: tensor '{name}' has dtype {dtype}; "
                                   f"expected one of {', '.join(FLOAT_DTYPES)}")
        return values.astype(np.float64).reshape(shape)
