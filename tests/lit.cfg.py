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
