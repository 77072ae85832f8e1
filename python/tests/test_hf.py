"""GPU tests of muse.hf, MuSe as a Hugging Face transformers attention
implementation (pytest). They skip cleanly without PyTorch, transformers (with
AttentionInterface) or a CUDA GPU.

Tiny models are built from configs (no download) and run twice on the same
weights: with attn_implementation="sdpa" and with the name muse.hf.register()
gave. MuSe configured to be exact must then give sdpa's outputs: causal with a
window that covers the sequence (window_blocks * block_size >= N), acausal
with every key cluster near (near_clusters = key_clusters). The query and key
projections are scaled up so that the softmax is far from uniform; otherwise a
wrong mask or head mapping could hide behind near-equal weights.
"""

import copy
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "AttentionInterface"):
    pytest.skip("transformers %s has no AttentionInterface" % transformers.__version__,
                allow_module_level=True)
if not hasattr(torch.library, "custom_op"):
    pytest.skip("torch %s has no torch.library.custom_op (needs 2.4+)" % torch.__version__,
                allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

import muse  # noqa: E402
import muse.hf  # noqa: E402

DEV = torch.device("cuda")
N = 320          # not a multiple of the causal block: the last block is partial
BLOCK = 64
LAYERS = 2
# Exact in both modes: the causal window covers N, and every acausal key
# cluster is near.
EXACT = dict(block_size=BLOCK, window_blocks=(N + BLOCK - 1) // BLOCK,
             query_clusters=16, key_clusters=16, near_clusters=16)
EXACT_NAME = muse.hf.register("muse-test-exact", **EXACT)
# What an acausal call gets of EXACT: the causal section applies to causal
# calls only.
EXACT_ACAUSAL = {k: v for k, v in EXACT.items() if k not in ("block_size", "window_blocks")}


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def counting(name):
    """Wraps the registered function to count its calls: proof that the
    model went through MuSe and not through a built-in implementation."""
    fn = transformers.AttentionInterface()[name]
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args[1].shape)
        return fn(*args, **kwargs)

    transformers.AttentionInterface.register(name, wrapped)
    return calls, lambda: transformers.AttentionInterface.register(name, fn)


def sharpen(model):
    # Default initialisation gives near-uniform attention; scale q and k.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("q_proj.weight", "k_proj.weight", "self.query.weight",
                               "self.key.weight")):
                p.mul_(4.0)


def llama_config(**kw):
    return transformers.LlamaConfig(
        vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2,  # GQA 2: k, v have 2 heads
        max_position_embeddings=1024, **kw)


def bert_config():
    return transformers.BertConfig(
        vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=LAYERS,
        num_attention_heads=4, max_position_embeddings=512, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)


def pair(auto_cls, config, name, dtype):
    """(sdpa model in fp32, sdpa model in dtype, model `name` in dtype): one
    set of weights."""
    torch.manual_seed(0)
    ref = auto_cls.from_config(copy.deepcopy(config), attn_implementation="sdpa")
    sharpen(ref)
    ref = ref.to(DEV).eval()
    other = auto_cls.from_config(copy.deepcopy(config), attn_implementation=name)
    other.load_state_dict(ref.state_dict())
    other = other.to(DEV, dtype).eval()
    assert other.config._attn_implementation == name
    low = copy.deepcopy(ref).to(dtype)
    return ref, low, other


def check_close(out_ref32, out_sdpa, out_muse, dtype):
    assert torch.isfinite(out_muse).all()
    if dtype == torch.float32:
        assert rel(out_muse, out_sdpa) < 2e-3, rel(out_muse, out_sdpa)
    else:
        # bf16: MuSe and sdpa round differently; both must be as close to the
        # fp32 model as bf16 allows.
        e_sdpa, e_muse = rel(out_sdpa, out_ref32), rel(out_muse, out_ref32)
        assert e_muse <= 1.5 * e_sdpa + 2e-3, (e_muse, e_sdpa)
        assert rel(out_muse, out_sdpa) < 3e-2, rel(out_muse, out_sdpa)


def ids(batch=2, n=N, seed=1):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, 256, (batch, n), generator=g).to(DEV)


# ------------------------------------------------------------------ models

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_llama_causal_gqa_matches_sdpa(dtype):
    ref, low, mm = pair(transformers.AutoModelForCausalLM, llama_config(), EXACT_NAME, dtype)
    x = ids()
    calls, restore = counting(EXACT_NAME)
    try:
        with torch.no_grad():
            out_ref = ref(input_ids=x, use_cache=False).logits
            out_sdpa = low(input_ids=x, use_cache=False).logits
            out_muse = mm(input_ids=x, use_cache=False).logits
            # An all-ones padding mask says "no padding": still exact.
            out_ones = mm(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits
    finally:
        restore()
    assert len(calls) == 2 * LAYERS and all(s[2] == N for s in calls), calls
    check_close(out_ref, out_sdpa, out_muse, dtype)
    assert rel(out_ones, out_muse) < 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_bert_acausal_matches_sdpa(dtype):
    ref, low, mm = pair(transformers.AutoModel, bert_config(), EXACT_NAME, dtype)
    x = ids()
    calls, restore = counting(EXACT_NAME)
    try:
        with torch.no_grad():
            out_ref = ref(input_ids=x).last_hidden_state
            out_sdpa = low(input_ids=x).last_hidden_state
            out_muse = mm(input_ids=x).last_hidden_state
    finally:
        restore()
    assert len(calls) == LAYERS, calls
    check_close(out_ref, out_sdpa, out_muse, dtype)


def test_spec_overrides_reach_the_kernels():
    # A window of one block and 4 monopole key clusters per far segment: no
    # longer exact, so the logits move away from sdpa's (while staying finite).
    name = muse.hf.register("muse-test-coarse", block_size=BLOCK, window_blocks=1,
                            query_clusters=4, key_clusters=4, order=0)
    ref, _, mm = pair(transformers.AutoModelForCausalLM, llama_config(), name, torch.float32)
    x = ids()
    with torch.no_grad():
        out_ref = ref(input_ids=x, use_cache=False).logits
        out_muse = mm(input_ids=x, use_cache=False).logits
    assert torch.isfinite(out_muse).all()
    assert rel(out_muse, out_ref) > 1e-4


# ------------------------------------------------------ the function itself

def qkv(dtype=torch.bfloat16, n=N, heads=4, kv_heads=2):
    g = torch.Generator(device=DEV).manual_seed(7)
    q = torch.randn(1, heads, n, 64, device=DEV, generator=g).to(dtype)
    k = torch.randn(1, kv_heads, n, 64, device=DEV, generator=g).to(dtype)
    v = torch.randn(1, kv_heads, n, 64, device=DEV, generator=g).to(dtype)
    return q, k, v


def test_materialised_causal_and_full_masks():
    # A model or a static cache may hand over the causal or full pattern as a
    # 4-D mask instead of None: the same kernels must run.
    fn = transformers.AttentionInterface()[EXACT_NAME]
    causal_module = types.SimpleNamespace(is_causal=True)
    q, k, v = qkv()
    o_none, w = fn(causal_module, q, k, v, None, scaling=0.125)
    assert w is None and o_none.shape == (1, N, 4, 64)
    expect = muse.attention(q, k, v, is_causal=True, scale=0.125, **EXACT).transpose(1, 2)
    assert rel(o_none, expect) < 1e-3
    tril = torch.ones(N, N, dtype=torch.bool, device=DEV).tril()[None, None]
    o_bool, _ = fn(causal_module, q, k, v, tril, scaling=0.125)
    additive = torch.zeros(1, 1, N, N, device=DEV, dtype=q.dtype).masked_fill(
        ~tril, torch.finfo(q.dtype).min)
    o_add, _ = fn(causal_module, q, k, v, additive, scaling=0.125)
    assert rel(o_bool, o_none) < 1e-3 and rel(o_add, o_none) < 1e-3
    # All keys allowed: acausal, even for a causal module (as sdpa with a mask).
    full = torch.ones(1, 1, N, N, dtype=torch.bool, device=DEV)
    o_full, _ = fn(causal_module, q, k, v, full, scaling=0.125)
    acausal = muse.attention(q, k, v, is_causal=False, scale=0.125,
                             **EXACT_ACAUSAL).transpose(1, 2)
    assert rel(o_full, acausal) < 1e-3
    assert rel(o_full, o_none) > 0.1  # the two patterns really differ here


def test_errors_name_what_is_unsupported():
    fn = transformers.AttentionInterface()[EXACT_NAME]
    module = types.SimpleNamespace(is_causal=True)
    q, k, v = qkv()
    with pytest.raises(NotImplementedError, match="dropout"):
        fn(module, q, k, v, None, dropout=0.1)
    with pytest.raises(NotImplementedError, match="output_attentions"):
        fn(module, q, k, v, None, output_attentions=True)
    bias = torch.full((1, 1, N, N), -1.0, device=DEV, dtype=q.dtype)
    with pytest.raises(NotImplementedError, match="bias"):
        fn(module, q, k, v, bias)
    with pytest.raises(NotImplementedError, match="position_bias"):
        fn(module, q, k, v, None, position_bias=bias)
    window = torch.ones(N, N, dtype=torch.bool, device=DEV).tril().triu(-31)[None, None]
    with pytest.raises(NotImplementedError, match="neither causal nor all keys"):
        fn(module, q, k, v, window)
    q1 = q[:, :, :2]
    with pytest.raises(NotImplementedError, match="2 queries over %d cached keys" % N):
        fn(module, q1, k, v, None)
    with pytest.raises(TypeError, match="scaling"):
        muse.hf.register("muse-test-bad", scale=0.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        muse.hf.register("muse-test-bad", clusters=8)
    with pytest.raises(ValueError, match="already an attention implementation"):
        muse.hf.register("sdpa")


def test_llama_padding_and_dropout_are_refused():
    _, _, mm = pair(transformers.AutoModelForCausalLM, llama_config(), EXACT_NAME,
                    torch.bfloat16)
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :5] = 0  # left padding in the first sequence
    with torch.no_grad(), pytest.raises(NotImplementedError, match="padding"):
        mm(input_ids=x, attention_mask=mask, use_cache=False)
    _, _, md = pair(transformers.AutoModelForCausalLM, llama_config(attention_dropout=0.1),
                    EXACT_NAME, torch.bfloat16)
    md.train()
    with torch.no_grad(), pytest.raises(NotImplementedError, match="dropout"):
        md(input_ids=x, use_cache=False)
