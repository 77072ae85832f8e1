"""Spec arguments and keyword overrides, as text for libmuse (no torch here).

`muse.attention(..., spec=None, **overrides)` names a spec three ways: None
(the default spec, specs/default.yaml), a path to a YAML file, or the YAML text
itself. Keywords override single fields and are handed to libmuse as
"section.field=value" lines, so that an overridden value goes through exactly
the checks of a written one (lib/Spec/Overrides.cpp).
"""

import os

# Keyword -> "section.field", one entry per field of lib/Spec/FieldTable.cpp
# that a keyword may set. `attention.causal` is missing on purpose: it comes
# from the call's is_causal; a dotted name ("clustering.query_clusters") is
# accepted as well and passed through unchanged.
KEYWORD_FIELDS = {
    "name": "name",
    "head_dim": "attention.head_dim",
    "value_dim": "attention.value_dim",
    "dtype": "attention.dtype",
    "scale": "attention.scale",
    "kv_heads_ratio": "attention.kv_heads_ratio",
    "query_clusters": "clustering.query_clusters",
    "key_clusters": "clustering.key_clusters",
    "kmeans_iters": "clustering.kmeans_iters",
    "order": "multipole.order",
    "near_clusters": "multipole.near_clusters",
    "block_size": "causal.block_size",
    "window_blocks": "causal.window_blocks",
    "block_q": "tiling.block_q",
    "block_k": "tiling.block_k",
    "warps": "tiling.warps",
    "arch": "target.arch",
}

# Separates override lines in the one string the custom op carries; a value
# can never contain it (format_value refuses).
SEPARATOR = "\n"


_INF = float("inf")

# The formatting below is plain operations on constants (%-formatting, str
# methods, global dict lookups) so that torch.compile folds it while tracing
# muse.attention with fullgraph=True.


def format_value(key, value):
    """A keyword's value as the YAML scalar libmuse reads."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return "%d" % value
    if isinstance(value, float):
        if value != value or value == _INF or value == -_INF:
            raise ValueError("muse: %s=%r is not a finite number" % (key, value))
        return "%r" % value
    if isinstance(value, str):
        if not value or "\n" in value or "\r" in value:
            raise ValueError("muse: %s=%r must be a non-empty single-line string" % (key, value))
        return value
    raise TypeError("muse: %s=%r has type %s; a spec field takes a bool, int, float or str" %
                    (key, value, type(value).__name__))


def field_path(key):
    """The "section.field" a keyword names, or a TypeError listing them all."""
    path = KEYWORD_FIELDS.get(key)
    if path is not None:
        return path
    if "." in key:
        return key  # libmuse reports an unknown dotted field with the allowed list
    if key in ("causal", "is_causal"):
        raise TypeError("muse: pass is_causal=True/False, not %s=; attention.causal is taken "
                        "from is_causal" % key)
    raise TypeError("muse.attention() got an unexpected keyword argument %r; spec fields "
                    "that may be overridden: %s (or any 'section.field' of the spec)" %
                    (key, ", ".join(sorted(KEYWORD_FIELDS))))


def format_overrides(overrides):
    """Keyword overrides (a dict) as "section.field=value" lines, sorted by
    field so that equal overrides give equal text (the cache key)."""
    lines = []
    for key in sorted(overrides):
        lines.append(field_path(key) + "=" + format_value(key, overrides[key]))
    return SEPARATOR.join(lines)


def split_overrides(text):
    """The inverse of format_overrides / join_overrides: a list of lines."""
    return [line for line in text.split(SEPARATOR) if line] if text else []


def join_overrides(*texts):
    """Concatenates override texts; a later line for the same field wins in
    libmuse, so the order of the arguments is the order of precedence."""
    parts = []
    for t in texts:
        if t:
            parts.append(t)
    return SEPARATOR.join(parts)


def call_overrides(spec, overrides, is_causal, dtype_name, D, Dv, ratio, arch):
    """The override lines one call builds with. The default spec ("") takes
    everything the tensors fix (dtype, dims, GQA ratio, causality, the
    device's architecture) from them; a given spec is used as written and
    checked against the tensors after the build. The user's keywords come
    last and win."""
    auto = ""
    if spec == "":
        auto = SEPARATOR.join([
            "attention.dtype=" + dtype_name,
            "attention.head_dim=%d" % D,
            "attention.value_dim=%d" % Dv,
            "attention.kv_heads_ratio=%d" % ratio,
            "attention.causal=" + ("true" if is_causal else "false"),
            "target.arch=" + arch,
        ])
    return join_overrides(auto, overrides)


def escape_line_breaks(text):
    """The op's string arguments as single lines: torch.compile's inductor
    copies a custom op's arguments into comments of the Python it generates,
    where a line break of a YAML text or of the override lines would end the
    comment and break the module (seen with torch 2.11 in backward graphs).
    Plain str methods, so that torch.compile folds the call."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


_UNESCAPE = {"n": "\n", "r": "\r", "\\": "\\"}


def unescape_line_breaks(text):
    """The inverse of escape_line_breaks (run by the op, outside tracing)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _UNESCAPE:
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def default_spec_path():
    """specs/default.yaml: inside the installed package (data/default.yaml) or
    in the source checkout that holds this package."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "data", "default.yaml"),
        os.path.join(os.path.dirname(os.path.dirname(here)), "specs", "default.yaml"),
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("muse: the default spec was not found (looked in %s); pass spec= "
                            "a YAML path or text" % ", ".join(candidates))


def is_yaml_text(spec):
    """A spec string is YAML text when it spans lines or holds a mapping
    ("name: x"); otherwise it is a path."""
    return "\n" in spec or (":" in spec and not spec.endswith((".yaml", ".yml")) and
                            not os.path.exists(spec))


def resolve_spec(spec):
    """(yaml_text, origin) for a spec argument already reduced to a string
    ("" = the default spec). origin names the file for error messages."""
    if spec == "":
        path = default_spec_path()
    elif is_yaml_text(spec):
        return spec, None
    else:
        path = spec
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read(), path
    except OSError as e:
        raise ValueError("muse: spec file %r cannot be read (%s); spec= takes a path to a "
                         "YAML file, the YAML text itself, or None for the default spec" %
                         (path, e.strerror or e)) from e


def spec_argument(spec):
    """The spec argument of muse.attention as the string the op carries."""
    if spec is None:
        return ""
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("muse: spec is an empty string; pass None for the default spec")
        return spec
    if isinstance(spec, os.PathLike):
        return os.fspath(spec)
    raise TypeError("muse: spec must be None, a path or YAML text, not %s" %
                    type(spec).__name__)
