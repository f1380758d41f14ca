"""Prints a LAYER.so's exported metadata (pretty JSON) and, for a CUDA
layer, the size and magic of its kernel image: what libmoert reads."""
import ctypes
import json
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.moec_abi_version.restype = ctypes.c_uint32
lib.moec_layer_metadata.restype = ctypes.c_char_p
print("abi_version", lib.moec_abi_version())
metadata = json.loads(lib.moec_layer_metadata())
print(json.dumps(metadata, indent=1, sort_keys=True))
if metadata.get("device") == "cuda":
    size = ctypes.c_uint64()
    lib.moec_cuda_image.restype = ctypes.c_void_p
    image = lib.moec_cuda_image(ctypes.byref(size))
    magic = int.from_bytes(ctypes.string_at(image, 4), "little")
    print(f"image {size.value} bytes, magic {magic:#x}, aligned {image % 16 == 0}")
