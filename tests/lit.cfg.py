# lit configuration for moec's IR and tool tests.
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py",
                   "unit", "e2e", "reference", "fuzz", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "tests")

llvm_config.with_system_environment(["HOME", "TMP", "TEMP"])
llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%python", config.python_executable))

tool_dirs = [os.path.join(config.moe_obj_root, "bin"), config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["moe-opt", "moec", "moe-run"], tool_dirs)

# The CUDA toolkit (--target cuda): libdevice and ptxas at $CUDA_HOME or
# /usr/local/cuda; cuobjdump (SASS checks) where the toolkit or PATH has it.
# Tests that need them say REQUIRES and report UNSUPPORTED without them.
import shutil

cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
if os.path.exists(os.path.join(cuda_home, "nvvm", "libdevice", "libdevice.10.bc")):
    config.available_features.add("cuda-toolkit")
ptxas = os.path.join(cuda_home, "bin", "ptxas")
if os.access(ptxas, os.X_OK):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
cuobjdump = os.path.join(cuda_home, "bin", "cuobjdump")
if not os.access(cuobjdump, os.X_OK):
    # scripts/install-deps.sh fetches it from PyPI where the toolkit lacks it.
    cuobjdump = shutil.which("cuobjdump", path="/opt/moec/cuda-tools/nvidia/cu13/bin:"
                             + os.environ.get("PATH", ""))
if cuobjdump:
    # cuobjdump runs nvdisasm from PATH.
    llvm_config.with_environment("PATH", os.path.dirname(cuobjdump), append_path=True)
    config.available_features.add("cuobjdump")
    config.substitutions.append(("%cuobjdump", cuobjdump))
