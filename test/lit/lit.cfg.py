# The muse lit suite: muse-opt, muse-translate (and muse-gen, when built) with
# FileCheck, not and count from LLVM's tools.
import os

import lit.formats

config.name = "muse"
config.test_format = lit.formats.ShTest(not lit_config.useValgrind)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = config.muse_obj_root

config.environment["PATH"] = os.pathsep.join(
    [config.muse_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ.get("PATH", ""))])
config.substitutions.append(("%muse_src", config.muse_source_dir))

# Tests never touch the user's kernel cache: everything that compiles uses one
# under the build tree unless a test sets its own.
config.environment["MUSE_CACHE_DIR"] = os.path.join(config.muse_obj_root, "muse-cache")
