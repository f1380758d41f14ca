#!/usr/bin/python3
"""Regenerates the seed corpora in tests/fuzz/corpus/<target>/ from the repository's own inputs.

  /usr/bin/python3 tests/fuzz/make_corpus.py [--layers DIR]

hf-config: every config.json of examples/ and tests/Frontend/Inputs. mlir-parse: every `.mlir`
test and example, split at `// -----`, comments dropped. safetensors: small valid checkpoints for
the fuzz target's fake layer (F32/BF16/F16) and one of each malformation the reader rejects. npy:
what NumPy writes (versions 1.0-3.0, ranks 0-3, other dtypes, Fortran order) and broken files.
layer-metadata: the metadata of layers moec compiled (--layers: a directory of LAYER.so files,
e.g. build/tests/unit/reliability-layers) and of the fake layers. Files are small (< 4 KiB), so
libFuzzer's default -max_len stays small and fast.
"""

import argparse
import ctypes
import glob
import hashlib
import io
import json
import os
import re
import shutil
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)


# --- hf-config ---

def hf_config():
    reset("hf-config")
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*", "config.json")) +
                       glob.glob(os.path.join(ROOT, "examples", "configs", "*.json")) +
                       glob.glob(os.path.join(ROOT, "tests", "Frontend", "Inputs", "*.json"))):
        parts = os.path.relpath(path, ROOT).split(os.sep)
        name = parts[-2] if parts[-1] == "config.json" else os.path.splitext(parts[-1])[0]
        with open(path, "rb") as f:
            put("hf-config", name + ".json", f.read())
    # Found by the fuzzer: a JSON escape in an echoed value made a two-line error message.
    put("hf-config", "newline-in-model-type.json", '{"model_type": "mix\\ntral"}')


# --- mlir-parse ---

def mlir_parse():
    reset("mlir-parse")
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "**", "*.mlir"), recursive=True) +
                   glob.glob(os.path.join(ROOT, "examples", "mlir", "*.mlir")))
    for path in paths:
        with open(path) as f:
            text = f.read()
        stem = os.path.relpath(path, ROOT).replace(os.sep, "_")[:-5]
        for i, chunk in enumerate(re.split(r"^// -----.*$", text, flags=re.M)):
            lines = [l for l in chunk.splitlines() if not l.lstrip().startswith("//")]
            body = "\n".join(lines).strip() + "\n"
            if body.strip():
                put("mlir-parse", f"{stem}.{i}.mlir", body)
    # Found by the fuzzer: ends inside a symbol name (the lexer needs the NUL terminator).
    put("mlir-parse", "unterminated-symbol.mlir", "func.func @cf")


# --- safetensors ---

def st_file(tensors, header_extra=None, raw_header=None, data_override=None):
    header, data = {}, b""
    if header_extra:
        header.update(header_extra)
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + (data if data_override is None else data_override)


def encode(values, dtype):
    a = np.asarray(values, dtype=np.float32)
    if dtype == "F32":
        return a.tobytes()
    if dtype == "F16":
        return a.astype(np.float16).tobytes()
    return (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def fake_checkpoint(dtype):
    """What tests/unit/runtime/fake_layer.c (FAKE_PACKED) takes, prefix ''."""
    t = [("gate.weight", dtype, [4, 8], encode(np.arange(32) * 0.5 - 3, dtype))]
    for e in range(4):
        t.append((f"experts.{e}.w1.weight", dtype, [3, 8], encode(np.arange(24) * 0.25 + e, dtype)))
    return t


def safetensors():
    reset("safetensors")
    for dtype in ("F32", "BF16", "F16"):
        put("safetensors", f"fake-layer-{dtype.lower()}.safetensors",
            st_file(fake_checkpoint(dtype), {"__metadata__": {"format": "pt"}}))
    put("safetensors", "empty-header.safetensors", st_file([]))
    put("safetensors", "metadata-only.safetensors",
        st_file([], {"__metadata__": {"format": "pt", "note": "x"}}))
    put("safetensors", "zero-size-tensor.safetensors", st_file([("z", "F32", [0, 8], b"")]))
    put("safetensors", "other-dtypes.safetensors", st_file(
        [("b", "BOOL", [3], b"\x00\x01\x00"), ("i", "I64", [2], b"\x00" * 16),
         ("f8", "F8_E4M3", [4], b"\x01\x02\x03\x04"), ("d", "F64", [1], b"\x00" * 8)]))
    good = fake_checkpoint("F32")
    put("safetensors", "truncated.safetensors", st_file(good)[:-40])
    put("safetensors", "wrong-shape.safetensors",
        st_file([(n, d, s[::-1], p) for n, d, s, p in good]))
    put("safetensors", "header-too-long.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    put("safetensors", "header-past-end.safetensors", struct.pack("<Q", 64) + b"{}")
    put("safetensors", "short.safetensors", b"\x02\x00\x00")
    put("safetensors", "not-object.safetensors", st_file([], raw_header=b"[1, 2]"))
    put("safetensors", "bad-json.safetensors", st_file([], raw_header=b'{"a": {"dtype": '))
    put("safetensors", "duplicate.safetensors", st_file([], raw_header=(
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'),
        data_override=b"\x00" * 8))
    put("safetensors", "overlap.safetensors", st_file([], raw_header=(
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        b'"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}'),
        data_override=b"\x00" * 12))
    put("safetensors", "reversed-offsets.safetensors", st_file([], raw_header=(
        b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}'),
        data_override=b"\x00" * 8))
    put("safetensors", "huge-shape.safetensors", st_file([], raw_header=(
        b'{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}')))
    put("safetensors", "unknown-dtype.safetensors", st_file([], raw_header=(
        b'{"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}'), data_override=b"\x00"))


# --- npy ---

def npy_bytes(array, version=None, fortran=False):
    f = io.BytesIO()
    a = np.asfortranarray(array) if fortran else array
    np.lib.format.write_array(f, a, version=version, allow_pickle=False)
    return f.getvalue()


def npy():
    reset("npy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    put("npy", "f32-3x4.npy", npy_bytes(x))
    put("npy", "f32-0x64.npy", npy_bytes(np.zeros((0, 64), np.float32)))
    put("npy", "f32-1x8.npy", npy_bytes(np.ones((1, 8), np.float32)))
    put("npy", "f32-5.npy", npy_bytes(np.arange(5, dtype=np.float32)))
    put("npy", "f32-scalar.npy", npy_bytes(np.float32(1.5)))
    put("npy", "f32-2x2x2.npy", npy_bytes(np.zeros((2, 2, 2), np.float32)))
    put("npy", "f32-v2.npy", npy_bytes(x, version=(2, 0)))
    put("npy", "f32-v3.npy", npy_bytes(x, version=(3, 0)))
    put("npy", "f32-fortran.npy", npy_bytes(x, fortran=True))
    put("npy", "f32-nan-inf.npy", npy_bytes(np.array([[np.nan, np.inf], [-np.inf, -0.0]], np.float32)))
    put("npy", "f64.npy", npy_bytes(x.astype(np.float64)))
    put("npy", "f32-big-endian.npy", npy_bytes(x.astype(">f4")))
    put("npy", "i32.npy", npy_bytes(x.astype(np.int32)))
    put("npy", "bool.npy", npy_bytes(x > 0))
    put("npy", "structured.npy", npy_bytes(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])))
    put("npy", "truncated.npy", npy_bytes(x)[:-5])
    put("npy", "header-only.npy", npy_bytes(x)[:128])
    put("npy", "bad-magic.npy", b"\x93NUMPZ\x01\x00" + npy_bytes(x)[8:])
    put("npy", "version-9.npy", b"\x93NUMPY\x09\x00" + npy_bytes(x)[8:])
    # A header promising far more data than the file holds.
    h = npy_bytes(np.zeros((1, 64), np.float32))
    put("npy", "promises-too-much.npy",
        h[:h.index(b"(")] + b"(100000000, 64)" + h[h.index(b")") + 1:])


# --- layer-metadata ---

FAKE_METADATA = {
    "abi_version": 1, "moec_version": "test", "family": "fake", "hidden_size": 8,
    "num_experts": 4, "top_k": 2, "token_independent": True,
    "workspace_bytes_per_token": 100, "workspace_bytes_fixed": 1000,
    "arguments": [
        {"name": "x", "role": "input", "dtype": "f32", "shape": [-1, 8]},
        {"name": "gate.weight", "role": "weight", "dtype": "f32", "shape": [4, 8]},
        {"name": "experts.{e}.w1.weight", "role": "weight", "dtype": "bf16", "shape": [4, 3, 8],
         "layout": "panels", "panel": 2, "packed_shape": [4, 2, 8, 2], "stacked": True},
        {"name": "output", "role": "output", "dtype": "f32", "shape": [-1, 8]},
        {"name": "tokens_per_expert", "role": "stats", "dtype": "i64", "shape": [4]}]}


# A cuda layer's launch plan (docs/abi.md): expressions in T, a tensor-map argument with its
# box, dynamic shared memory, a free.
CUDA_METADATA = {
    "abi_version": 1, "family": "mixtral", "device": "cuda", "hidden_size": 64,
    "num_experts": 8, "top_k": 2, "token_independent": True,
    "workspace_bytes_per_token": 0, "workspace_bytes_fixed": 0,
    "arguments": [
        {"name": "x", "role": "input", "dtype": "f32", "shape": [-1, 64]},
        {"name": "experts.{e}.w1.weight", "role": "weight", "dtype": "bf16",
         "shape": [8, 32, 64], "stacked": True},
        {"name": "output", "role": "output", "dtype": "f32", "shape": [-1, 64]},
        {"name": "tokens_per_expert", "role": "stats", "dtype": "i64", "shape": [8]}],
    "cuda": {
        "arch": "sm_90a", "image": "fatbin",
        "buffers": [
            {"dtype": "bf16", "shape": [["muli", ["ceildivui", "T", 64], 64], 64]},
            {"dtype": "f32", "shape": ["T", 64]},
            {"dtype": "i64", "shape": [8]}],
        "steps": [
            {"launch": "gather", "grid": [["ceildivui", "T", 64], 1, 1], "block": [128, 1, 1],
             "args": [{"arg": 0}, {"buffer": 0}]},
            {"launch": "ffn", "grid": [["ceildivui", "T", 64], 1, 1], "block": [128, 1, 1],
             "shared_bytes": 98336,
             "args": [{"tensor_map": {"buffer": 0}, "box": [64, 64]},
                      {"tensor_map": {"arg": 1}, "box": [1, 64, 64]}, {"buffer": 1}]},
            {"free": 0}],
        "results": [{"buffer": 1}, {"buffer": 2}]}}


def layer_metadata(layers):
    reset("layer-metadata")
    put("layer-metadata", "fake.json", json.dumps(FAKE_METADATA))
    put("layer-metadata", "cuda-plan.json", json.dumps(CUDA_METADATA))
    m = dict(FAKE_METADATA, threading="openmp", workspace_bytes_per_thread=64)
    put("layer-metadata", "fake-openmp.json", json.dumps(m))
    for so in sorted(glob.glob(os.path.join(layers, "*.so"))) if layers else []:
        lib = ctypes.CDLL(os.path.abspath(so))
        lib.moec_layer_metadata.restype = ctypes.c_char_p
        text = lib.moec_layer_metadata()
        if len(text) <= 4096:
            put("layer-metadata", os.path.basename(so)[:-3] + ".json", text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", help="directory of compiled LAYER.so files for layer-metadata")
    a = p.parse_args()
    hf_config()
    mlir_parse()
    safetensors()
    npy()
    layer_metadata(a.layers)
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
