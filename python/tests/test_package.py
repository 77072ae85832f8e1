"""Torch-free tests of the muse package: library discovery and loading, the C
ABI through ctypes, spec and override formatting, env(). They need libmuse
(MUSE_LIBRARY, set by ctest, or any place muse/_library.py looks) but no GPU
and no PyTorch; run with `python3 -m unittest test_package` from this folder
with PYTHONPATH holding the package (ctest: python.package)."""

import ctypes
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE)))  # python/ in a checkout or prefix

import muse  # noqa: E402
from muse import _errors, _library, _runtime, _spec  # noqa: E402


def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


class DiscoveryTest(unittest.TestCase):
    def test_muse_library_overrides_everything(self):
        paths = _library.candidate_paths({"MUSE_LIBRARY": "/x/libmuse.so"}, "/p/python/muse")
        self.assertEqual(paths, [("/x/libmuse.so", "MUSE_LIBRARY")])

    def test_muse_library_may_name_a_folder(self):
        with tempfile.TemporaryDirectory() as d:
            paths = _library.candidate_paths({"MUSE_LIBRARY": d}, "/p/python/muse")
            self.assertEqual(paths, [(os.path.join(d, "libmuse.so"), "MUSE_LIBRARY")])

    def test_order_prefix_then_checkout_then_loader(self):
        paths = _library.candidate_paths({}, "/p/python/muse")
        self.assertEqual([p for p, _ in paths], [
            "/p/lib/libmuse.so", "/p/build/lib/libmuse.so", "/p/build/lib/Runtime/libmuse.so",
            None])

    def test_installed_layout_is_found_without_environment(self):
        real = _library.library().path
        with tempfile.TemporaryDirectory() as prefix:
            pkg = os.path.join(prefix, "python", "muse")
            os.makedirs(pkg)
            os.makedirs(os.path.join(prefix, "lib"))
            os.symlink(real, os.path.join(prefix, "lib", "libmuse.so"))
            lib = _library.load({}, pkg)
            self.assertEqual(lib.path, os.path.join(prefix, "lib", "libmuse.so"))
            self.assertEqual(lib.version, muse.__version__)

    def test_not_found_lists_every_place(self):
        with tempfile.TemporaryDirectory() as prefix:
            pkg = os.path.join(prefix, "python", "muse")
            env = {"LD_LIBRARY_PATH": ""}
            try:
                lib = _library.load(env, pkg)
            except _errors.MuseLibraryNotFound as e:
                msg = str(e)
                self.assertIn(os.path.join(prefix, "lib", "libmuse.so"), msg)
                self.assertIn(os.path.join(prefix, "build", "lib", "Runtime", "libmuse.so"), msg)
                self.assertIn("MUSE_LIBRARY", msg)
            else:  # a libmuse on the system loader's path is a legitimate find
                self.assertEqual(lib.path, "libmuse.so")

    def test_wrong_muse_library_is_an_error_not_a_fallback(self):
        with tempfile.TemporaryDirectory() as d:
            missing = os.path.join(d, "nope.so")
            with self.assertRaisesRegex(_errors.MuseLibraryNotFound, "nope.so"):
                _library.load({"MUSE_LIBRARY": missing})
            junk = os.path.join(d, "libjunk.so")
            with open(junk, "w") as f:
                f.write("not an ELF file")
            with self.assertRaisesRegex(_errors.MuseLibraryNotFound, "could not load .*libjunk"):
                _library.load({"MUSE_LIBRARY": junk})

    def test_a_library_that_is_not_libmuse(self):
        import ctypes.util
        libc = ctypes.util.find_library("c")
        if not libc:
            self.skipTest("no libc found by name")
        with self.assertRaisesRegex(_errors.MuseLibraryNotFound, "is not libmuse"):
            _library.Library(ctypes.CDLL(libc), libc)


class LibraryTest(unittest.TestCase):
    def test_versions(self):
        lib = _library.library()
        self.assertEqual(lib.abi_version, _library.ABI_VERSION)
        self.assertEqual(lib.version, muse.__version__)

    def test_struct_layout_matches_the_header(self):
        # x86-64: pointers and int64 are 8 bytes (muse.h, muse_forward_args_t).
        self.assertEqual(ctypes.sizeof(_library.Shape), 40)
        # ... then o_type (int32, padded to 8).
        self.assertEqual(ctypes.sizeof(_library.ForwardArgs), 40 + 4 * 32 + 8 * 5 + 8)
        self.assertEqual(_library.ForwardArgs.o_type.offset, 208)
        self.assertEqual(_library.AttentionInfo.scale.offset, 48)
        # muse_backward_args_t: shape, q k v o (pointer + 3 strides each), lse,
        # d_o + strides, d_lse, dq dk dv + strides, workspace and its size,
        # grad_type (int32, padded to 8).
        self.assertEqual(ctypes.sizeof(_library.BackwardArgs), 40 + 4 * 32 + 8 + 32 + 8 + 3 * 32
                         + 16 + 8)
        self.assertEqual(_library.BackwardArgs.grad_type.offset, 328)
        self.assertEqual(_library.BackwardArgs.d_o.offset, 176)
        self.assertEqual(_library.BackwardArgs.dq.offset, 216)

    def test_null_arguments_are_errors_not_crashes(self):
        lib = _library.library()
        status = lib.cdll.muse_attention_forward(None, None, None)
        self.assertEqual(status, _errors.INVALID_ARGUMENT)
        with self.assertRaisesRegex(_errors.MuseArgumentError, "must not be NULL"):
            lib.check(status)
        for name in ("muse_attention_backward", "muse_attention_backward_workspace_bytes"):
            status = getattr(lib.cdll, name)(None, None, None)
            self.assertEqual(status, _errors.INVALID_ARGUMENT, name)
            with self.assertRaisesRegex(_errors.MuseArgumentError, "must not be NULL"):
                lib.check(status)


class KeywordTest(unittest.TestCase):
    def test_format(self):
        text = _spec.format_overrides({"query_clusters": 32, "order": 0, "scale": 0.125,
                                       "dtype": "f16", "clustering.kmeans_iters": 2,
                                       "name": "x"})
        # Sorted by keyword, so equal keywords in any order give one cache key.
        self.assertEqual(text.split("\n"), [
            "clustering.kmeans_iters=2", "attention.dtype=f16", "name=x", "multipole.order=0",
            "clustering.query_clusters=32", "attention.scale=0.125"])

    def test_equal_keywords_give_equal_text(self):
        a = _spec.format_overrides({"order": 1, "near_clusters": 4})
        b = _spec.format_overrides({"near_clusters": 4, "order": 1})
        self.assertEqual(a, b)

    def test_values(self):
        self.assertEqual(_spec.format_value("k", True), "true")
        self.assertEqual(_spec.format_value("k", False), "false")
        self.assertEqual(_spec.format_value("k", 7), "7")
        self.assertEqual(_spec.format_value("k", 1e-3), "0.001")
        for bad in (float("nan"), float("inf")):
            with self.assertRaisesRegex(ValueError, "finite"):
                _spec.format_value("scale", bad)
        with self.assertRaisesRegex(ValueError, "single-line"):
            _spec.format_value("name", "a\nb")
        with self.assertRaisesRegex(TypeError, "bool, int, float or str"):
            _spec.format_value("order", [1])

    def test_unknown_keyword(self):
        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'dropout_p'.*"
                                               "query_clusters"):
            _spec.format_overrides({"dropout_p": 0.1})

    def test_causal_is_not_a_keyword(self):
        for key in ("causal", "is_causal"):
            with self.assertRaisesRegex(TypeError, "is_causal=True/False"):
                _spec.format_overrides({key: True})

    def test_call_overrides(self):
        # The default spec takes the tensors' fields, the user's keywords last.
        lines = _spec.call_overrides("", "clustering.query_clusters=8\nattention.dtype=f32",
                                     False, "f16", 128, 64, 4, "sm_90").split("\n")
        self.assertEqual(lines, [
            "attention.dtype=f16", "attention.head_dim=128", "attention.value_dim=64",
            "attention.kv_heads_ratio=4", "attention.causal=false", "target.arch=sm_90",
            "clustering.query_clusters=8", "attention.dtype=f32"])
        # A given spec is used as written (and checked against the tensors).
        self.assertEqual(_spec.call_overrides("x.yaml", "multipole.order=0", True, "bf16", 64,
                                              64, 1, "sm_90"), "multipole.order=0")

    def test_split_and_join(self):
        self.assertEqual(_spec.split_overrides(""), [])
        self.assertEqual(_spec.split_overrides(_spec.join_overrides("a=1", "", "b=2")),
                         ["a=1", "b=2"])

    def test_line_breaks_escape_and_come_back(self):
        # The op's strings are single lines (torch.compile copies them into
        # comments of generated code); the op gets back the exact text.
        for text in ("", "a=1", "a=1\nb=2", "name: x\r\nattention: {dtype: bf16}\n",
                     "c:\\path\\n.yaml", "\\", "trailing\\"):
            escaped = _spec.escape_line_breaks(text)
            self.assertNotIn("\n", escaped)
            self.assertNotIn("\r", escaped)
            self.assertEqual(_spec.unescape_line_breaks(escaped), text)
        # Text that was never escaped (no backslash) passes through.
        self.assertEqual(_spec.unescape_line_breaks("a=1\nb=2"), "a=1\nb=2")

    def test_keywords_cover_every_field_of_the_library(self):
        # An unknown field makes libmuse list every field it knows.
        with self.assertRaises(_errors.MuseSpecError) as cm:
            _runtime.engine().build(default_text(), ["nosuch.field=1"])
        listed = re.search(r"allowed: (.*)$", str(cm.exception), re.M).group(1)
        known = {f.strip() for f in listed.split(",")}
        self.assertEqual(set(_spec.KEYWORD_FIELDS.values()) | {"attention.causal"}, known)

    def test_every_keyword_reaches_its_field(self):
        # A list is a wrong value for every field: the error must be about the
        # value of that field, never an unknown field.
        for key, path in _spec.KEYWORD_FIELDS.items():
            with self.assertRaises(_errors.MuseSpecError, msg=key) as cm:
                _runtime.engine().build(default_text(), [path + "=[1, 2]"])
            msg = str(cm.exception)
            self.assertNotIn("unknown field", msg, key)
            self.assertIn(path, msg, key)


def default_text():
    return _spec.resolve_spec("")[0]


class SpecArgumentTest(unittest.TestCase):
    def test_default_spec(self):
        text, origin = _spec.resolve_spec("")
        self.assertTrue(origin.endswith("default.yaml"))
        self.assertIn("name: default", text)

    def test_path_and_text(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.yaml")
            with open(path, "w") as f:
                f.write("name: s\n")
            self.assertEqual(_spec.resolve_spec(path), ("name: s\n", path))
            self.assertFalse(_spec.is_yaml_text(path))
        self.assertEqual(_spec.resolve_spec("name: t\nattention: {}"),
                         ("name: t\nattention: {}", None))
        self.assertTrue(_spec.is_yaml_text("{name: t}"))

    def test_missing_file(self):
        with self.assertRaisesRegex(ValueError, "spec file '/nonexistent/x.yaml' cannot be read"):
            _spec.resolve_spec("/nonexistent/x.yaml")

    def test_spec_argument(self):
        self.assertEqual(_spec.spec_argument(None), "")
        import pathlib
        self.assertEqual(_spec.spec_argument(pathlib.Path("/a/b.yaml")), "/a/b.yaml")
        with self.assertRaisesRegex(ValueError, "empty"):
            _spec.spec_argument("  ")
        with self.assertRaisesRegex(TypeError, "must be None, a path or YAML text"):
            _spec.spec_argument(3)


class BuildTest(unittest.TestCase):
    def test_bad_spec_file_names_file_line_and_field(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.yaml")
            with open(path, "w") as f:
                f.write("name: bad\nclustering: {query_clusters: 0}\n")
            with self.assertRaises(_errors.MuseSpecError) as cm:
                _runtime.build_spec(path, "")
            msg = str(cm.exception)
            self.assertIn(path + ":2:", msg)
            self.assertIn("clustering.query_clusters", msg)
            self.assertIsInstance(cm.exception, ValueError)

    def test_bad_override_names_it(self):
        with self.assertRaises(_errors.MuseSpecError) as cm:
            _runtime.build_spec("", "clustering.query_clusters=0")
        self.assertIn("query_clusters=0", str(cm.exception))

    def test_build_compiles_then_needs_a_gpu(self):
        # On a machine without a GPU the spec compiles (NVRTC) and the load
        # fails with NO_DEVICE; with one it loads and reports what it built.
        try:
            att = _runtime.build_spec("", "clustering.query_clusters=16")
        except _errors.MuseError as e:
            self.assertEqual(e.status, _errors.NO_DEVICE, str(e))
            self.assertNotIsInstance(e, ValueError)
            return
        self.assertEqual(att.info.query_clusters, 16)
        self.assertEqual(att.info.dtype, "bf16")
        self.assertGreater(att.workspace_bytes(1, 2, 2, 256, 256), 0)
        # The backward's scratch follows the forward's buffers.
        self.assertGreater(att.backward_workspace_bytes(1, 2, 2, 256, 256),
                           att.workspace_bytes(1, 2, 2, 256, 256))

    def test_precompile_without_gpu(self):
        _runtime.engine().precompile_file(_spec.default_spec_path())


class EnvTest(unittest.TestCase):
    def test_env(self):
        e = muse.env()
        self.assertEqual(e["muse"], muse.__version__)
        self.assertEqual(e["library_version"], muse.__version__)
        self.assertTrue(os.path.exists(e["library"]))
        self.assertIn("torch", e)

    def test_cache_dir_rule(self):
        from muse._env import _cache_dir
        self.assertEqual(_cache_dir({"MUSE_CACHE_DIR": "/c", "HOME": "/h"}), "/c")
        self.assertEqual(_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}), "/x/muse")
        self.assertEqual(_cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}), "/h/.cache/muse")
        self.assertIsNone(_cache_dir({"MUSE_CACHE_DISABLE": "1", "HOME": "/h"}))
        self.assertEqual(_cache_dir({"MUSE_CACHE_DISABLE": "off", "HOME": "/h"}),
                         "/h/.cache/muse")

    @unittest.skipIf(have_torch(), "torch is installed")
    def test_attention_without_torch_says_why(self):
        with self.assertRaisesRegex(ImportError, "needs PyTorch"):
            muse.attention(None, None, None)


if __name__ == "__main__":
    unittest.main()
