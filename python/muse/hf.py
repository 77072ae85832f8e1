"""MuSe as a Hugging Face transformers attention implementation.

    import muse.hf
    muse.hf.register()                                    # name "muse", default spec
    muse.hf.register("muse-near4", query_clusters=32, near_clusters=4)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="muse")

register() adds a function to transformers.AttentionInterface (the table
`attn_implementation=` chooses from) and sdpa's mask builder under the same
name to transformers' AttentionMaskInterface. The mask builder matters: a name
without one gets no mask at all from transformers, so a padded batch would be
attended as if unpadded; with sdpa's builder the mask is None exactly when a
plain causal or full pattern suffices (no padding, no packing, no window in
reach), and is materialised otherwise, which the function below refuses.

Mapping of transformers' call (module, query, key, value, attention_mask,
dropout=, scaling=, is_causal=, **kwargs), q [B, H, N, D], k/v [B, H_kv, M, D]:
  - causal: the call's is_causal if given, else module.is_causal (True when
    the module has none, as in transformers' sdpa), and only for N > 1 (one
    query attends to every cached key, as sdpa does);
  - GQA: k and v keep their H_kv heads (muse.attention maps heads itself);
  - scaling: the softmax scale (the spec's scale is replaced by the model's);
  - the output comes back as (attn_output [B, N, H, Dv], None).
Unsupported, each a NotImplementedError naming it (never an exact fallback):
dropout > 0, output_attentions, attention sinks (s_aux), logit soft-capping,
additive position biases (position_bias, or a float mask holding a bias),
and any mask other than "all keys" or "causal over N = M" (padding, packed
sequences, sliding windows, prefix-LM, cached prefill of N != M queries).
"""

_TRANSFORMERS_MISSING = ("muse.hf needs Hugging Face transformers (with AttentionInterface, "
                         "4.48 or newer): pip install transformers")

# Keywords the model decides, not the spec: causality comes from the module and
# the mask, the scale from the model's `scaling`.
_MODEL_DECIDES = {"causal": "the model (module.is_causal and the attention mask)",
                  "is_causal": "the model (module.is_causal and the attention mask)",
                  "scale": "the model's `scaling` argument",
                  "attention.scale": "the model's `scaling` argument",
                  "attention.causal": "the model (module.is_causal and the attention mask)"}


# Names this module registered (and may therefore replace).
_registered = set()


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError(_TRANSFORMERS_MISSING) from e
    if not hasattr(transformers, "AttentionInterface"):
        raise ImportError("muse.hf: transformers %s has no AttentionInterface; %s"
                          % (getattr(transformers, "__version__", "?"), _TRANSFORMERS_MISSING))
    return transformers


def _register_mask(name):
    """sdpa's mask builder under `name` (see the module docstring for why);
    versions without masking_utils build masks in each model, and those masks
    reach the attention function, which checks them."""
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    AttentionMaskInterface.register(name, sdpa_mask)
    return True


def register(name="muse", spec=None, **overrides):
    """Registers MuSe as transformers attention implementation `name` and
    returns `name`. spec and overrides are muse.attention's (a YAML path or
    text, or None for the default spec; query_clusters=, near_clusters=,
    block_size=, window_blocks=, order=, ...); causality and scale come from
    the model and may not be given. The causal section's fields
    (block_size=, window_blocks=) apply to causal calls only, so one name
    serves a decoder's prefill and its single-query decoding steps; a spec
    file is used as written and must match each call's causality. A name
    registered here may be registered again (replacing it); transformers'
    own names may not.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("muse.hf.register: name must be a non-empty string, not %r" % (name,))
    for key in overrides:
        if key in _MODEL_DECIDES:
            raise TypeError("muse.hf.register: %s= is decided by %s, not by an override"
                            % (key, _MODEL_DECIDES[key]))
    # Unknown keywords and unformattable values fail here, at registration,
    # rather than inside the first forward pass.
    from . import _spec
    _spec.format_overrides(overrides)
    if spec is not None:
        _spec.spec_argument(spec)
    transformers = _transformers()
    from . import _TORCH_PROBLEM
    if _TORCH_PROBLEM is not None:
        raise ImportError("muse.hf needs muse.attention, which needs PyTorch: " + _TORCH_PROBLEM)
    # Replacing transformers' own implementations ("sdpa", "flash_attention_2",
    # ...) would silently change every model in the process; names muse.hf
    # registered itself may be registered again with another spec.
    if name == "eager" or (name in transformers.AttentionInterface() and name not in _registered):
        raise ValueError("muse.hf.register: %r is already an attention implementation of "
                         "transformers; choose another name (e.g. 'muse')" % name)
    fn = _make_attention(name, spec, dict(overrides), _acausal_overrides(overrides))
    transformers.AttentionInterface.register(name, fn)
    _register_mask(name)
    _registered.add(name)
    return name


def _unsupported(name, what, hint):
    return NotImplementedError("muse (transformers attention %r): %s is not supported; %s. MuSe "
                               "never falls back to exact attention." % (name, what, hint))


def _mask_pattern(name, mask, n, m):
    """'full' or 'causal' when the materialised mask is one of those patterns
    (a model or a compiled cache may build one where None would do), else a
    NotImplementedError. Reading the mask costs one device synchronisation;
    it happens only when a mask is passed."""
    import torch
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
        raise _unsupported(name, "an attention mask of type %s%s" % (
            type(mask).__name__, "" if not isinstance(mask, torch.Tensor) else
            " with shape %s" % (tuple(mask.shape),)),
            "MuSe takes no mask; only 4-D boolean or additive masks that say 'causal' or "
            "'every key' are accepted")
    if tuple(mask.shape[-2:]) != (n, m):
        raise _unsupported(name, "a mask of shape %s for %d queries and %d keys"
                           % (tuple(mask.shape), n, m), "the mask must be [B, 1, N, M]")
    if mask.dtype == torch.bool:
        keep = mask
    elif mask.is_floating_point():
        keep = mask == 0
        # Additive masks mark dropped keys with the dtype's lowest value or
        # -inf; anything else is a bias, which the kernels cannot add.
        lowest = torch.finfo(mask.dtype).min
        if bool(((~keep) & (mask > lowest / 2)).any()):
            raise _unsupported(name, "an additive attention bias (ALiBi, relative positions)",
                               "use a model without an attention bias")
    else:
        raise _unsupported(name, "a mask of dtype %s" % mask.dtype,
                           "masks are boolean or floating point")
    if bool(keep.all()):
        return "full"
    if n == m:
        causal = torch.ones(n, m, dtype=torch.bool, device=mask.device).tril()
        if bool((keep == causal).all()):
            return "causal"
    raise _unsupported(
        name, "this attention mask (neither causal nor all keys: padding tokens, packed "
        "sequences, a sliding window, a prefix-LM pattern, or a cached prefill of %d queries "
        "over %d keys)" % (n, m),
        "pass unpadded sequences of one length without an attention_mask (or an all-ones one), "
        "without a KV cache for multi-token steps")


def _acausal_overrides(overrides):
    """The overrides without the causal section's fields: one registration
    serves a decoder's causal calls and its acausal ones (a decoding step's
    single query over the cache), and libmuse refuses a causal section in an
    acausal spec."""
    return {k: v for k, v in overrides.items()
            if k not in _CAUSAL_FIELDS and not k.startswith("causal.")}


_CAUSAL_FIELDS = ("block_size", "window_blocks")


def _make_attention(name, spec, causal_overrides, acausal_overrides):
    from . import attention

    def muse_attention_forward(module, query, key, value, attention_mask, dropout=0.0,
                               scaling=None, is_causal=None, **kwargs):
        if dropout:
            raise _unsupported(name, "attention dropout (dropout=%r)" % (dropout,),
                               "set the config's attention_dropout to 0 or call model.eval()")
        if kwargs.get("output_attentions"):
            raise _unsupported(name, "output_attentions=True",
                               "MuSe never forms the attention weights")
        for key_name, what in (("s_aux", "attention sinks (s_aux)"),
                               ("softcap", "attention logit soft-capping (softcap)"),
                               ("position_bias", "an additive position bias (position_bias)")):
            if kwargs.get(key_name) is not None:
                raise _unsupported(name, what, "use a model without it")
        n, m = query.shape[2], key.shape[2]
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        if attention_mask is None:
            # As transformers' sdpa: one query (decoding) attends to every
            # cached key, so causality only matters for N > 1.
            causal = bool(is_causal) and n > 1
        else:
            causal = _mask_pattern(name, attention_mask, n, m) == "causal"
        if causal and n != m:
            raise _unsupported(name, "causal attention of %d queries over %d cached keys" % (n, m),
                               "MuSe's causal kernels need N = M (no KV cache for multi-token "
                               "steps)")
        out = attention(query, key, value, is_causal=causal, spec=spec, scale=scaling,
                        **(causal_overrides if causal else acausal_overrides))
        return out.transpose(1, 2).contiguous(), None

    muse_attention_forward.__qualname__ = "muse_attention_forward[%s]" % name
    return muse_attention_forward
