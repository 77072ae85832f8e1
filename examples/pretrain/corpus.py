"""Builds the byte corpus of the pretraining example from the source files of
the installed Python packages: real, long, human-written documents that are
on any machine with PyTorch, so nothing is downloaded.

Every top-level package directory of the interpreter's site-packages is one
document stream: its source files (extensions in SOURCE_EXTENSIONS, sorted by
path, each preceded by a one-line header "#### <package>/<relative path>\\n")
concatenated. Packages are taken in sorted name order; one package (--val,
numpy by default) is held out whole for validation.

Writes to --out:
  train.bin, val.bin   uint8, the concatenated bytes
  manifest.json        the packages, per package file count, bytes and
                       sha256, the interpreter and site-packages paths, and
                       the sha256 of each .bin, so that two machines can
                       check they train on the same data.

    python3 corpus.py --out work/corpus [--val numpy] [--max-train-mb 256]
"""

import argparse
import hashlib
import json
import os
import site
import sys

SOURCE_EXTENSIONS = (".py", ".pyi", ".pyx", ".pxd", ".c", ".cc", ".cpp", ".cxx", ".h", ".hpp",
                     ".cu", ".cuh")
# Files larger than this are generated tables (unicode data, embedded blobs),
# not text anyone wrote.
MAX_FILE_BYTES = 1 << 20


def site_dirs():
    """The site-packages folders of this interpreter (plus the user site),
    existing ones only, without duplicates, in a fixed order."""
    dirs = []
    for d in list(site.getsitepackages()) + [site.getusersitepackages()]:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in dirs:
            dirs.append(real)
    return dirs


def find_packages(dirs):
    """name -> directory of every top-level package (a folder holding an
    __init__.py); the first site folder wins for a name found twice."""
    found = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if (name.isidentifier() and not name.startswith("_") and name not in found
                    and os.path.isfile(os.path.join(path, "__init__.py"))):
                found[name] = path
    return found


def package_files(root):
    """Source files under root, as sorted relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for f in filenames:
            if f.endswith(SOURCE_EXTENSIONS):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def source_size(root):
    """An estimate of a package stream's size from file sizes alone."""
    total = 0
    for rel in package_files(root):
        try:
            size = os.path.getsize(os.path.join(root, rel))
        except OSError:
            continue
        if size <= MAX_FILE_BYTES:
            total += size
    return total


def package_bytes(name, root):
    """(bytes of the package stream, number of files used)."""
    parts = []
    count = 0
    for rel in package_files(root):
        path = os.path.join(root, rel)
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                continue
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"\0" in data:  # binary despite the extension
            continue
        parts.append(b"#### %s/%s\n" % (name.encode(), rel.replace(os.sep, "/").encode()))
        parts.append(data)
        if data and not data.endswith(b"\n"):
            parts.append(b"\n")
        count += 1
    return b"".join(parts), count


def build(out_dir, val_name, max_train_bytes, min_package_bytes):
    dirs = site_dirs()
    packages = find_packages(dirs)
    if val_name not in packages:
        raise SystemExit("corpus: the validation package %r is not installed here; found: %s"
                         % (val_name, ", ".join(sorted(packages)) or "none"))
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    totals = {"train": 0, "val": 0}
    files = {"train": open(os.path.join(out_dir, "train.bin"), "wb"),
             "val": open(os.path.join(out_dir, "val.bin"), "wb")}
    hashes = {"train": hashlib.sha256(), "val": hashlib.sha256()}
    try:
        for name in sorted(packages):
            split = "val" if name == val_name else "train"
            if split == "train" and totals["train"] + source_size(packages[name]) > max_train_bytes:
                # Decided from file sizes, without reading the package.
                entries.append({"package": name, "split": split, "skipped": "over --max-train-mb"})
                continue
            data, count = package_bytes(name, packages[name])
            entry = {"package": name, "split": split, "files": count, "bytes": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()}
            if len(data) < min_package_bytes and split == "train":
                entry["skipped"] = "smaller than --min-package-kb"
            elif split == "train" and totals["train"] + len(data) > max_train_bytes:
                entry["skipped"] = "over --max-train-mb"
            else:
                files[split].write(data)
                hashes[split].update(data)
                totals[split] += len(data)
            entries.append(entry)
    finally:
        for f in files.values():
            f.close()
    manifest = {
        "python": sys.version.split()[0],
        "site_packages": dirs,
        "extensions": list(SOURCE_EXTENSIONS),
        "max_file_bytes": MAX_FILE_BYTES,
        "val_package": val_name,
        "train_bytes": totals["train"],
        "val_bytes": totals["val"],
        "train_sha256": hashes["train"].hexdigest(),
        "val_sha256": hashes["val"].hexdigest(),
        "packages": entries,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (train.bin, val.bin, manifest.json)")
    p.add_argument("--val", default="numpy", help="package held out for validation")
    p.add_argument("--max-train-mb", type=float, default=256,
                   help="stop adding training packages past this size (in sorted order)")
    p.add_argument("--min-package-kb", type=float, default=16,
                   help="skip training packages with less source than this")
    a = p.parse_args(argv)
    m = build(a.out, a.val, int(a.max_train_mb * 2**20), int(a.min_package_kb * 1024))
    used = [e for e in m["packages"] if "skipped" not in e]
    print("corpus: %d packages, train %.1f MB, val %.1f MB (%s), written to %s"
          % (len(used), m["train_bytes"] / 1e6, m["val_bytes"] / 1e6, m["val_package"], a.out))
    if m["val_bytes"] == 0 or m["train_bytes"] == 0:
        raise SystemExit("corpus: an empty split; nothing to train or validate on")


if __name__ == "__main__":
    main()
