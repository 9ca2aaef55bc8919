#!/usr/bin/env python3
"""make_golden.py: golden data for the engine, computed with Hugging Face transformers.

Runs where torch + transformers + numpy are installed (the GPU machine; no internet needed).
Loads a synthetic gpt-oss checkpoint written by `export-model --synthetic NAME DIR --seed N`
into GptOssForCausalLM in fp32 with eager attention, MXFP4 experts dequantized exactly, and
writes a small JSON file the C++ test tests/golden/golden_test.cpp compares the engine with.

Usage (repository root):
    build/export-model --synthetic tiny /tmp/tiny-hf --seed 1
    python3 tests/golden/make_golden.py --checkpoint /tmp/tiny-hf \
        --prompts tests/golden/prompts.json --out tests/golden/tiny_seed1.json \
        --name tiny --seed 1 --device cuda
    python3 tests/golden/make_golden.py --self-test    # numpy-only checks (no torch needed)

For every prompt of prompts.json (text + ids from an independent tokenizer) it records:
  - greedy: --gen (32) greedy tokens, manual loop with full recompute (no KV cache);
  - per position of prompt + greedy (teacher forced): logsumexp of the logits and the top
    --top-all (4) logits; at the last prompt position the top --top (20) logits;
  - greedy_gap: top1 - top2 logit at each generated step (near ties are flagged).
Plus weight probes (values the engine's file must hold) and the config, so the C++ test can
refuse stale data with a clear message.

How the model is loaded ("manual" route, the one used for the data): the config without its
quantization_config builds a plain GptOssForCausalLM; the state dict is filled from
model.safetensors, MXFP4 experts decoded here (LUT, E8M0 scale 2^(s-127), low nibble = even
element), laid out as the model's parameters want ([E, H, 2I] / [E, I, H] in transformers 4.5x
and 5.x, gate/up rows interleaved). Then .float() (see the bf16-experts trap in
gpt-oss-spec.md), eval(), eager attention, eager experts where selectable, no TF32.

Cross-checks (the script exits non-zero and writes OUT.failed.json if one fails):
  1. an independent fp64 forward pass written from gpt-oss-spec.md, reading the checkpoint
     tensors directly, must match transformers' logits (--ref-tol, default 1e-3 abs);
  2. transformers' own loader, Mxfp4Config(dequantize=True) then .float(), when it works here,
     must give bit-identical parameters and logits within --ref-tol (skipped with a note if
     that loader is unavailable; --no-hf-loader skips it);
  3. transformers' YaRN inv_freq / attention scaling must equal the spec's formulas;
  4. every float tensor must be exactly representable in bf16 (the engine stores bf16).
"""
import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np

FP4_LUT = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
FORMAT = "gptoss-golden-1"


def fail(msg):
    print(f"make_golden.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# MXFP4 (numpy only, so --self-test runs anywhere)
# ---------------------------------------------------------------------------------------------
def mxfp4_dequant(blocks, scales):
    """uint8 blocks [..., G, 16] + uint8 scales [..., G] -> float32 [..., G*32]."""
    blocks = np.asarray(blocks)
    scales = np.asarray(scales)
    if blocks.dtype != np.uint8 or scales.dtype != np.uint8:
        raise ValueError(f"MXFP4 blocks/scales must be uint8, got {blocks.dtype}/{scales.dtype}")
    if blocks.ndim < 2 or blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 shapes: blocks {blocks.shape} scales {scales.shape} "
                         "(want blocks [..., G, 16], scales [..., G])")
    lut = np.array(FP4_LUT, dtype=np.float32)
    vals = np.empty(blocks.shape[:-1] + (32,), dtype=np.float32)
    vals[..., 0::2] = lut[blocks & 0x0F]   # byte b: element 2b in the low nibble
    vals[..., 1::2] = lut[blocks >> 4]     #         element 2b+1 in the high nibble
    # E8M0: 2^(s-127). Powers of two: the product below is exact (fp64, then to fp32).
    scale = np.ldexp(1.0, scales.astype(np.int64) - 127)
    out = (vals.astype(np.float64) * scale[..., None]).astype(np.float32)
    return out.reshape(blocks.shape[:-2] + (blocks.shape[-2] * 32,))


def mxfp4_value_slow(blocks, scales, idx):
    """One element by the spec's words, for the self-test. idx = (..., col)."""
    *lead, col = idx
    b = int(blocks[tuple(lead) + (col // 32, (col % 32) // 2)])
    code = (b & 0x0F) if col % 2 == 0 else (b >> 4)
    s = int(scales[tuple(lead) + (col // 32,)])
    return FP4_LUT[code] * 2.0 ** (s - 127)


def yarn_inv_freq(head_dim, theta, factor, orig_ctx, beta_fast, beta_slow):
    """Spec's YaRN (no truncation): (inv_freq [d/2] float64, concentration)."""
    d = head_dim
    half = d // 2
    low = half * math.log(orig_ctx / (beta_fast * 2 * math.pi)) / math.log(theta)
    high = half * math.log(orig_ctx / (beta_slow * 2 * math.pi)) / math.log(theta)
    inv = np.zeros(half, dtype=np.float64)
    for i in range(half):
        freq = theta ** (2 * i / d)
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        inv[i] = (1.0 / (factor * freq)) * ramp + (1.0 / freq) * (1.0 - ramp)
    return inv, 0.1 * math.log(factor) + 1.0


def self_test():
    """Hand-made MXFP4 and YaRN cases; numpy only."""
    # byte 0x21: element 0 = code 1 (0.5), element 1 = code 2 (1.0); scale 128 doubles them.
    blocks = np.zeros((1, 1, 16), np.uint8)
    scales = np.full((1, 1), 128, np.uint8)
    blocks[0, 0, 0] = 0x21
    blocks[0, 0, 1] = 0xF8   # element 2 = code 8 (-0.0), element 3 = code 15 (-6)
    blocks[0, 0, 15] = 0x7A  # element 30 = code 10 (-1), element 31 = code 7 (6)
    v = mxfp4_dequant(blocks, scales)
    assert v.shape == (1, 32) and v.dtype == np.float32, v.shape
    assert v[0, 0] == 1.0 and v[0, 1] == 2.0, v[0, :2]
    assert v[0, 2] == 0.0 and math.copysign(1.0, v[0, 2]) == -1.0, "code 8 must be -0.0"
    assert v[0, 3] == -12.0 and v[0, 30] == -2.0 and v[0, 31] == 12.0, v[0, [3, 30, 31]]
    assert np.all(v[0, 4:30] == 0.0)
    # scale 127 = x1, 120 = 2^-7, 0 = 2^-127 (subnormal in fp32, exact), two groups
    blocks = np.full((2, 2, 16), 0x73, np.uint8)  # even elements code 3 (1.5), odd code 7 (6)
    scales = np.array([[127, 120], [0, 130]], np.uint8)
    v = mxfp4_dequant(blocks, scales)
    assert v.shape == (2, 64)
    assert v[0, 0] == 1.5 and v[0, 1] == 6.0
    assert v[0, 32] == np.float32(1.5 / 128) and v[0, 33] == np.float32(6.0 / 128)
    assert v[1, 0] == np.float32(1.5 * 2.0 ** -127) and v[1, 0] > 0, v[1, 0]
    assert v[1, 32] == 12.0 and v[1, 33] == 48.0
    # random data against the element-by-element reading of the spec
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=(3, 5, 4, 16), dtype=np.uint8)
    scales = rng.integers(117, 138, size=(3, 5, 4), dtype=np.uint8)
    v = mxfp4_dequant(blocks, scales)
    assert v.shape == (3, 5, 128)
    for _ in range(2000):
        idx = (int(rng.integers(3)), int(rng.integers(5)), int(rng.integers(128)))
        want = mxfp4_value_slow(blocks, scales, idx)
        assert v[idx] == np.float32(want), (idx, v[idx], want)
    # YaRN, 20b parameters: i = 0 is pure extrapolation (ramp 0, 1/freq = 1), the last index is
    # interpolated (ramp 1): 1/(32 theta^((d-2)/d)); concentration 0.1 ln 32 + 1.
    inv, conc = yarn_inv_freq(64, 150000.0, 32.0, 4096, 32.0, 1.0)
    assert inv[0] == 1.0, inv[0]
    assert abs(inv[31] - 1.0 / (32.0 * 150000.0 ** (62 / 64))) < 1e-18, inv[31]
    low = 32 * math.log(4096 / (32 * 2 * math.pi)) / math.log(150000.0)
    assert 8.0 < low < 9.0, low  # 8.09...: i <= 8 are not interpolated at all
    assert inv[8] == 1.0 / 150000.0 ** (16 / 64)
    assert abs(conc - 1.3465735902799727) < 1e-15, conc
    print("self-test: MXFP4 decode and YaRN table OK")


# ---------------------------------------------------------------------------------------------
# Checkpoint reading and validation
# ---------------------------------------------------------------------------------------------
def read_config(ckpt):
    path = os.path.join(ckpt, "config.json")
    if not os.path.isfile(path):
        fail(f"{path}: missing (make it with: export-model --synthetic tiny {ckpt} --seed 1)")
    with open(path) as f:
        cfg = json.load(f)
    need = ["num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "num_local_experts", "vocab_size",
            "sliding_window", "rms_norm_eps"]
    missing = [k for k in need if k not in cfg]
    if missing:
        fail(f"{path}: missing fields {missing}")
    if cfg.get("model_type") != "gpt_oss":
        fail(f"{path}: model_type is {cfg.get('model_type')!r}, want 'gpt_oss'")
    if "num_experts_per_tok" not in cfg and "experts_per_token" not in cfg:
        fail(f"{path}: missing num_experts_per_tok")
    return cfg


def rope_dict(cfg):
    r = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = r.get("rope_theta", cfg.get("rope_theta"))
    return r, theta


def layer_sliding(cfg):
    L = cfg["num_hidden_layers"]
    lt = cfg.get("layer_types")
    if lt is None:
        fail("config.json: no layer_types (the engine and this script need the per-layer "
             "sliding/full list written explicitly)")
    if len(lt) != L or any(t not in ("sliding_attention", "full_attention") for t in lt):
        fail(f"config.json: bad layer_types {lt}")
    return [1 if t == "sliding_attention" else 0 for t in lt]


def safetensors_files(ckpt):
    single = os.path.join(ckpt, "model.safetensors")
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        return sorted({os.path.join(ckpt, v) for v in wm.values()})
    fail(f"{ckpt}: neither model.safetensors nor model.safetensors.index.json")


def read_safetensors_raw(path):
    """Minimal reader (header JSON + raw little-endian data) -> {name: (dtype str, shape, bytes)}."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            out[name] = (info["dtype"], info["shape"], f.read(b - a))
    return out


def load_tensors(ckpt, torch):
    """All checkpoint tensors as torch tensors (CPU). Uses the safetensors package when present,
    else the minimal reader above."""
    tensors = {}
    for path in safetensors_files(ckpt):
        try:
            from safetensors import safe_open
            with safe_open(path, framework="pt") as f:
                for k in f.keys():
                    tensors[k] = f.get_tensor(k)
            continue
        except ImportError:
            pass
        tmap = {"BF16": torch.bfloat16, "F32": torch.float32, "U8": torch.uint8,
                "F16": torch.float16, "I32": torch.int32}
        for name, (dt, shape, data) in read_safetensors_raw(path).items():
            if dt not in tmap:
                fail(f"{path}: tensor {name} has dtype {dt}, not expected in this checkpoint")
            t = torch.frombuffer(bytearray(data), dtype=tmap[dt]) if data else \
                torch.empty(0, dtype=tmap[dt])
            tensors[name] = t.reshape(shape)
    return tensors


def expected_tensors(cfg):
    """{name: (kind, shape)}; kind 'float' (bf16 expected) or 'u8'."""
    V, H = cfg["vocab_size"], cfg["hidden_size"]
    L, I, E = cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["num_local_experts"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    if H % 32 or I % 32:
        fail(f"hidden_size {H} and intermediate_size {I} must be multiples of 32 (MXFP4 blocks)")
    e = {"model.embed_tokens.weight": ("float", [V, H]), "lm_head.weight": ("float", [V, H]),
         "model.norm.weight": ("float", [H])}
    for l in range(L):
        p = f"model.layers.{l}."
        e.update({
            p + "input_layernorm.weight": ("float", [H]),
            p + "post_attention_layernorm.weight": ("float", [H]),
            p + "self_attn.q_proj.weight": ("float", [nh * hd, H]),
            p + "self_attn.q_proj.bias": ("float", [nh * hd]),
            p + "self_attn.k_proj.weight": ("float", [nkv * hd, H]),
            p + "self_attn.k_proj.bias": ("float", [nkv * hd]),
            p + "self_attn.v_proj.weight": ("float", [nkv * hd, H]),
            p + "self_attn.v_proj.bias": ("float", [nkv * hd]),
            p + "self_attn.o_proj.weight": ("float", [H, nh * hd]),
            p + "self_attn.o_proj.bias": ("float", [H]),
            p + "self_attn.sinks": ("float", [nh]),
            p + "mlp.router.weight": ("float", [E, H]),
            p + "mlp.router.bias": ("float", [E]),
            p + "mlp.experts.gate_up_proj_blocks": ("u8", [E, 2 * I, H // 32, 16]),
            p + "mlp.experts.gate_up_proj_scales": ("u8", [E, 2 * I, H // 32]),
            p + "mlp.experts.gate_up_proj_bias": ("float", [E, 2 * I]),
            p + "mlp.experts.down_proj_blocks": ("u8", [E, H, I // 32, 16]),
            p + "mlp.experts.down_proj_scales": ("u8", [E, H, I // 32]),
            p + "mlp.experts.down_proj_bias": ("float", [E, H]),
        })
    return e


def validate_tensors(T, cfg, torch):
    exp = expected_tensors(cfg)
    missing = sorted(set(exp) - set(T))
    extra = sorted(set(T) - set(exp))
    if missing or extra:
        fail(f"checkpoint tensor names differ from gpt-oss-spec.md: missing {missing[:8]}"
             f"{' ...' if len(missing) > 8 else ''} ({len(missing)}), unexpected {extra[:8]}"
             f"{' ...' if len(extra) > 8 else ''} ({len(extra)})")
    dtypes = {}
    for name, (kind, shape) in exp.items():
        t = T[name]
        if list(t.shape) != shape:
            fail(f"tensor {name}: shape {list(t.shape)}, want {shape}")
        if kind == "u8" and t.dtype != torch.uint8:
            fail(f"tensor {name}: dtype {t.dtype}, want uint8")
        if kind == "float":
            if t.dtype not in (torch.bfloat16, torch.float32):
                fail(f"tensor {name}: dtype {t.dtype}, want bfloat16")
            f32 = t.float()
            if not torch.equal(f32.to(torch.bfloat16).float(), f32):
                fail(f"tensor {name}: values not exactly representable in bf16 "
                     "(the engine stores bf16; golden data would not apply)")
            if not torch.isfinite(f32).all():
                fail(f"tensor {name}: non-finite values")
        dtypes[str(t.dtype)] = dtypes.get(str(t.dtype), 0) + 1
    print(f"checkpoint: {len(exp)} tensors, names and shapes as in the spec; dtypes {dtypes}")


def dequant_experts(T, cfg, torch):
    """{layer: (w1 [E,2I,H] f32, w2 [E,H,I] f32)} as torch CPU tensors (rows = outputs)."""
    out = {}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}.mlp.experts."
        w = []
        for proj in ("gate_up_proj", "down_proj"):
            v = mxfp4_dequant(T[p + proj + "_blocks"].numpy(), T[p + proj + "_scales"].numpy())
            if not np.isfinite(v).all():
                fail(f"{p}{proj}: MXFP4 scales give non-finite values")
            w.append(torch.from_numpy(v))
        out[l] = tuple(w)
    return out


# ---------------------------------------------------------------------------------------------
# Independent fp64 reference of gpt-oss-spec.md (reads checkpoint tensors, not the HF model)
# ---------------------------------------------------------------------------------------------
class Reference:
    def __init__(self, T, W, cfg, dev, torch):
        self.torch = torch
        d64 = lambda t: t.to(device=dev, dtype=torch.float64)
        self.cfg, self.dev = cfg, dev
        self.emb = d64(T["model.embed_tokens.weight"])
        self.unemb = d64(T["lm_head.weight"])
        self.norm = d64(T["model.norm.weight"])
        self.layers = []
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            g = lambda n: d64(T[p + n])
            self.layers.append(dict(
                attn_norm=g("input_layernorm.weight"), mlp_norm=g("post_attention_layernorm.weight"),
                wq=g("self_attn.q_proj.weight"), bq=g("self_attn.q_proj.bias"),
                wk=g("self_attn.k_proj.weight"), bk=g("self_attn.k_proj.bias"),
                wv=g("self_attn.v_proj.weight"), bv=g("self_attn.v_proj.bias"),
                wo=g("self_attn.o_proj.weight"), bo=g("self_attn.o_proj.bias"),
                sinks=g("self_attn.sinks"), wr=g("mlp.router.weight"), br=g("mlp.router.bias"),
                w1=d64(W[l][0]), b1=g("mlp.experts.gate_up_proj_bias"),
                w2=d64(W[l][1]), b2=g("mlp.experts.down_proj_bias")))
        r, theta = rope_dict(cfg)
        inv, self.conc = yarn_inv_freq(cfg["head_dim"], float(theta), float(r["factor"]),
                                       int(r["original_max_position_embeddings"]),
                                       float(r.get("beta_fast", 32.0)), float(r.get("beta_slow", 1.0)))
        self.inv_freq = torch.tensor(inv, dtype=torch.float64, device=dev)
        self.sliding = layer_sliding(cfg)
        self.limit = float(cfg.get("swiglu_limit", 7.0))
        self.k = int(cfg.get("num_experts_per_tok", cfg.get("experts_per_token")))

    def rms(self, x, w):
        return x * self.torch.rsqrt((x * x).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"]) * w

    def logits(self, ids):
        torch, c = self.torch, self.cfg
        T = len(ids)
        nh, nkv, hd, win = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["sliding_window"]
        x = self.emb[torch.tensor(ids, device=self.dev)]                     # [T, H]
        pos = torch.arange(T, dtype=torch.float64, device=self.dev)
        ang = pos[:, None] * self.inv_freq[None, :]                            # [T, d/2]
        cos, sin = torch.cos(ang) * self.conc, torch.sin(ang) * self.conc
        i = torch.arange(T, device=self.dev)
        causal = i[None, :] <= i[:, None]                                      # [Tq, Tk]
        window = causal & (i[:, None] - i[None, :] < win)

        def rope(t):  # [T, heads, d]: half-split rotation
            a, b = t[..., : hd // 2], t[..., hd // 2:]
            cs, sn = cos[:, None, :], sin[:, None, :]
            return torch.cat([a * cs - b * sn, b * cs + a * sn], dim=-1)

        for l, W in enumerate(self.layers):
            h = self.rms(x, W["attn_norm"])
            q = rope((h @ W["wq"].T + W["bq"]).view(T, nh, hd))
            k = rope((h @ W["wk"].T + W["bk"]).view(T, nkv, hd))
            v = (h @ W["wv"].T + W["bv"]).view(T, nkv, hd)
            mask = window if self.sliding[l] else causal
            heads = []
            for hh in range(nh):
                kv = hh // (nh // nkv)
                s = (q[:, hh] @ k[:, kv].T) / math.sqrt(hd)                  # [Tq, Tk]
                s = s.masked_fill(~mask, float("-inf"))
                s = torch.cat([s, W["sinks"][hh].expand(T, 1)], dim=1)      # sink column
                p = torch.softmax(s, dim=1)[:, :T]                             # ... dropped
                heads.append(p @ v[:, kv])
            x = x + torch.cat(heads, dim=1) @ W["wo"].T + W["bo"]
            h = self.rms(x, W["mlp_norm"])
            r = h @ W["wr"].T + W["br"]                                        # [T, E]
            top_v, top_i = torch.topk(r, self.k, dim=1)
            wts = torch.softmax(top_v, dim=1)
            y1 = torch.einsum("erh,th->etr", W["w1"], h) + W["b1"][:, None, :]  # [E, T, 2I]
            gate = y1[..., 0::2].clamp(max=self.limit)
            up = y1[..., 1::2].clamp(min=-self.limit, max=self.limit)
            a = gate * torch.sigmoid(1.702 * gate) * (up + 1)
            y2 = torch.einsum("ehi,eti->eth", W["w2"], a) + W["b2"][:, None, :]  # [E, T, H]
            moe = torch.zeros_like(x)
            for j in range(self.k):
                moe += wts[:, j, None] * y2[top_i[:, j], torch.arange(T, device=self.dev)]
            x = x + moe
        return self.rms(x, self.norm) @ self.unemb.T                           # [T, V]


# ---------------------------------------------------------------------------------------------
# transformers model
# ---------------------------------------------------------------------------------------------
def set_exact_fp32(torch):
    """No TF32 / reduced precision anywhere (these are torch's defaults; set them anyway)."""
    def attempt(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- API differs across torch versions
            print(f"note: {e}")
    try:  # torch >= 2.9 API; older torch raises AssertionError (not AttributeError) on hasattr
        new_api = hasattr(torch.backends.cuda.matmul, "fp32_precision")
    except Exception:  # noqa: BLE001
        new_api = False
    if new_api:
        attempt(lambda: setattr(torch.backends.cuda.matmul, "fp32_precision", "ieee"))
        attempt(lambda: setattr(torch.backends.cudnn, "fp32_precision", "ieee"))
    else:
        attempt(lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", False))
        attempt(lambda: setattr(torch.backends.cudnn, "allow_tf32", False))
    attempt(lambda: setattr(torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction", False))
    attempt(lambda: setattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False))
    attempt(lambda: torch.set_float32_matmul_precision("highest"))


def force_eager(model):
    """Eager attention and (where selectable) eager experts; returns a description."""
    for setter, value in (("set_attn_implementation", "eager"), ("set_experts_implementation", "eager")):
        fn = getattr(model, setter, None)
        if fn is not None:
            try:
                fn(value)
            except Exception as e:  # noqa: BLE001 -- report and go on, checked below
                print(f"note: model.{setter}('eager') failed: {e}")
    if getattr(model.config, "_experts_implementation", "eager") not in (None, "eager"):
        try:
            model.config._experts_implementation = "eager"
        except Exception as e:  # noqa: BLE001
            print(f"note: could not select eager experts: {e}")
    attn = getattr(model.config, "_attn_implementation", None)
    if attn != "eager":
        fail(f"attention implementation is {attn!r}, want 'eager'")
    return {"attn_implementation": attn,
            "experts_implementation": str(getattr(model.config, "_experts_implementation", "n/a"))}


def build_manual(cfg_json, T, W, dev, torch, transformers):
    import tempfile
    from transformers import AutoConfig, GptOssForCausalLM
    d = dict(cfg_json)
    d.pop("quantization_config", None)
    for k in ("torch_dtype", "dtype"):
        d.pop(k, None)
    # The same config.json, minus quantization, read by transformers' own config loader.
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(d, f)
        config = AutoConfig.from_pretrained(tmp)
    if type(config).__name__ != "GptOssConfig":
        fail(f"transformers read config.json as {type(config).__name__}, want GptOssConfig")
    try:
        config._attn_implementation = "eager"
    except Exception:  # noqa: BLE001
        pass
    try:
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    except TypeError:
        model = GptOssForCausalLM(config)
    model = model.float()
    info = force_eager(model)

    msd = model.state_dict()
    E, H, I = cfg_json["num_local_experts"], cfg_json["hidden_size"], cfg_json["intermediate_size"]
    sd = {}
    for name, t in T.items():
        if name.endswith(("_blocks", "_scales")):
            continue
        sd[name] = t.float()
    layout = None
    for l in range(cfg_json["num_hidden_layers"]):
        p = f"model.layers.{l}.mlp.experts."
        w1, w2 = W[l]                                       # [E, 2I, H], [E, H, I]
        want1 = tuple(msd[p + "gate_up_proj"].shape) if p + "gate_up_proj" in msd else None
        want2 = tuple(msd[p + "down_proj"].shape) if p + "down_proj" in msd else None
        if want1 is None or want2 is None:
            fail(f"this transformers has no parameters {p}gate_up_proj / {p}down_proj; its expert "
                 f"parameters are {[k for k in msd if k.startswith(p)]}")
        if want1 == (E, H, 2 * I) and want2 == (E, I, H) and (H != 2 * I and H != I):
            layout = "transposed [E,H,2I]/[E,I,H]"
            sd[p + "gate_up_proj"] = w1.transpose(1, 2).contiguous()
            sd[p + "down_proj"] = w2.transpose(1, 2).contiguous()
        elif want1 == (E, 2 * I, H) and want2 == (E, H, I) and (H != 2 * I and H != I):
            layout = "rows=outputs [E,2I,H]/[E,H,I]"
            sd[p + "gate_up_proj"] = w1.contiguous()
            sd[p + "down_proj"] = w2.contiguous()
        elif want1 == (E, H, 2 * I) and want2 == (E, I, H):
            layout = "transposed [E,H,2I]/[E,I,H] (assumed: H equals 2I or I)"
            sd[p + "gate_up_proj"] = w1.transpose(1, 2).contiguous()
            sd[p + "down_proj"] = w2.transpose(1, 2).contiguous()
        else:
            fail(f"unknown expert layout in this transformers: gate_up_proj {want1}, down_proj "
                 f"{want2} (E={E}, H={H}, I={I})")
    missing = sorted(set(msd) - set(sd))
    unexpected = sorted(set(sd) - set(msd))
    if missing or unexpected:
        fail(f"state dict mapping: model parameters not filled {missing[:10]}, checkpoint tensors "
             f"with no parameter {unexpected[:10]}")
    for k, v in sd.items():
        if tuple(msd[k].shape) != tuple(v.shape):
            fail(f"parameter {k}: model wants {tuple(msd[k].shape)}, mapped tensor {tuple(v.shape)}")
    model.load_state_dict(sd, strict=True)
    model = model.float().to(dev).eval()
    info["expert_layout"] = layout
    info["route"] = "manual (config without quantization_config + MXFP4 decoded by this script)"
    check_model_dtypes(model, torch)
    return model, info


def build_hf_loader(ckpt, dev, torch, transformers):
    from transformers import Mxfp4Config
    qc = Mxfp4Config(dequantize=True)
    last = None
    for dkey in ("dtype", "torch_dtype"):
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                ckpt, quantization_config=qc, attn_implementation="eager", **{dkey: torch.float32})
            break
        except TypeError as e:
            last = e
    else:
        raise last
    model = model.float().to(dev).eval()   # the bf16-experts trap: .float() is required
    info = force_eager(model)
    check_model_dtypes(model, torch)
    return model, info


def check_model_dtypes(model, torch):
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    bad += [n for n, b in model.named_buffers() if b.is_floating_point() and b.dtype != torch.float32]
    if bad:
        fail(f"parameters/buffers not fp32 after .float(): {bad[:10]}")


def check_rope(model, cfg, torch):
    r, theta = rope_dict(cfg)
    if r.get("rope_type", r.get("type")) != "yarn":
        fail(f"config rope type {r.get('rope_type')!r}, want 'yarn'")
    if r.get("truncate", True) is not False:
        print("WARNING: rope config has no 'truncate': false; transformers then rounds the YaRN "
              "ramp bounds, which the spec does not (checked against the spec just below)")
    inv, conc = yarn_inv_freq(cfg["head_dim"], float(theta), float(r["factor"]),
                              int(r["original_max_position_embeddings"]),
                              float(r.get("beta_fast", 32.0)), float(r.get("beta_slow", 1.0)))
    rot = getattr(model.model, "rotary_emb", None)
    if rot is None or not hasattr(rot, "inv_freq") or not hasattr(rot, "attention_scaling"):
        print("note: no model.model.rotary_emb.inv_freq/attention_scaling here; RoPE is covered "
              "by the fp64 reference check only")
        return {"skipped": "no rotary_emb.inv_freq"}
    hf_inv = rot.inv_freq.detach().double().cpu().numpy()
    hf_scale = float(rot.attention_scaling)
    rel = float(np.max(np.abs(hf_inv - inv) / inv))
    if hf_inv.shape != inv.shape or rel > 1e-6 or abs(hf_scale - conc) > 1e-6:
        fail(f"transformers' YaRN differs from the spec: max rel inv_freq diff {rel:.3g}, "
             f"attention scaling {hf_scale} vs {conc}")
    print(f"rope: YaRN inv_freq matches the spec (max rel diff {rel:.2g}), concentration {hf_scale:.6f}")
    return {"inv_freq_max_rel_diff": rel, "attention_scaling": hf_scale}


def check_modules(model, cfg):
    lim = float(cfg.get("swiglu_limit", 7.0))
    for l, layer in enumerate(model.model.layers):
        ex = layer.mlp.experts
        if hasattr(ex, "limit") and float(ex.limit) != lim:
            fail(f"layer {l}: transformers' swiglu limit {ex.limit} != config swiglu_limit {lim}")
        if hasattr(ex, "alpha") and float(ex.alpha) != 1.702:
            fail(f"layer {l}: transformers' swiglu alpha {ex.alpha} != 1.702")
        want = cfg["sliding_window"] if cfg["layer_types"][l] == "sliding_attention" else None
        sw = getattr(layer.self_attn, "sliding_window", "n/a")
        if sw != "n/a" and sw != want:
            fail(f"layer {l}: transformers' sliding_window {sw}, want {want}")
        k = getattr(layer.mlp.router, "top_k", None)
        want_k = int(cfg.get("num_experts_per_tok", cfg.get("experts_per_token")))
        if k is not None and int(k) != want_k:
            fail(f"layer {l}: router top_k {k}, want {want_k}")


# ---------------------------------------------------------------------------------------------
# Golden data
# ---------------------------------------------------------------------------------------------
def r8(x):
    """Round to 8 significant digits (fp32 values; far below every tolerance)."""
    return float(f"{float(x):.8g}")


def run_prompts(model, prompts, gen, top_last, top_all, dev, torch):
    @torch.no_grad()
    def logits_all(ids):
        out = model(input_ids=torch.tensor([ids], dtype=torch.long, device=dev), use_cache=False)
        lg = out.logits[0]
        if lg.dtype != torch.float32 or lg.shape[0] != len(ids):
            fail(f"unexpected logits {tuple(lg.shape)} {lg.dtype}")
        return lg

    results = []
    for p in prompts:
        ids = list(p["ids"])
        t0 = time.time()
        seq = list(ids)
        greedy, loop_last = [], []
        for _ in range(gen):                       # full recompute each step, no KV cache
            lg = logits_all(seq)[-1]
            nxt = int(torch.argmax(lg))
            greedy.append(nxt)
            loop_last.append(lg.detach().cpu())
            seq.append(nxt)
        tf = logits_all(seq).detach().cpu()        # teacher forced over prompt + greedy: [P+G, V]
        P = len(ids)
        lse = torch.logsumexp(tf.double(), dim=1)
        tv, ti = torch.topk(tf, max(top_all, 2), dim=1)
        loop_vs_tf = max(float((loop_last[j] - tf[P - 1 + j]).abs().max()) for j in range(gen))
        gaps = [float(tv[P - 1 + j, 0] - tv[P - 1 + j, 1]) for j in range(gen)]
        tf_greedy = [int(ti[P - 1 + j, 0]) for j in range(gen)]
        lv, li = torch.topk(tf[P - 1], top_last)
        rec = {
            "name": p["name"], "text": p["text"], "ids": ids, "greedy": greedy,
            "greedy_gap": [r8(g) for g in gaps],
            "top_last": {"ids": [int(i) for i in li], "logits": [r8(v) for v in lv]},
            "lse": [r8(v) for v in lse],
            "top": {"ids": [[int(i) for i in row[:top_all]] for row in ti],
                    "logits": [[r8(v) for v in row[:top_all]] for row in tv]},
        }
        results.append((rec, tf, {"loop_vs_teacher_forced_max_abs": loop_vs_tf,
                                  "teacher_forced_argmax_differs_at": [j for j in range(gen) if tf_greedy[j] != greedy[j]]}))
        print(f"  {p['name']:12s} prompt {P:3d} tokens, greedy {greedy[:6]}..., min gap "
              f"{min(gaps):.3g}, |loop - teacher forced| {loop_vs_tf:.2g}, {time.time() - t0:.1f}s")
    return results


def weight_probes(T, W, cfg):
    """Values the engine's file must hold: [{tensor, kind, index, value}] in engine names."""
    rng = random.Random(1234)
    L, H = cfg["num_hidden_layers"], cfg["hidden_size"]
    Q = cfg["num_attention_heads"] * cfg["head_dim"]
    KV = cfg["num_key_value_heads"] * cfg["head_dim"]
    probes = []

    def pick(shape):
        idxs = [[0] * len(shape), [s - 1 for s in shape]]
        idxs += [[rng.randrange(s) for s in shape] for _ in range(3)]
        return idxs

    def add(engine, shape, getter, kind="bf16"):
        for idx in pick(shape):
            probes.append({"tensor": engine, "kind": kind, "index": idx, "value": float(getter(idx))})

    def hf(name):
        t = T[name].float()
        return lambda idx: t[tuple(idx)].item()

    V = cfg["vocab_size"]
    add("embedding", [V, H], hf("model.embed_tokens.weight"))
    add("unembedding", [V, H], hf("lm_head.weight"))
    add("norm", [H], hf("model.norm.weight"))
    for l in sorted({0, L - 1}):
        p = f"model.layers.{l}."
        e = f"layers.{l}."
        q, k, v = (T[p + f"self_attn.{n}_proj.weight"].float() for n in "qkv")
        qb, kb, vb = (T[p + f"self_attn.{n}_proj.bias"].float() for n in "qkv")
        qkv = lambda idx, q=q, k=k, v=v: (q[idx[0]] if idx[0] < Q else k[idx[0] - Q] if idx[0] < Q + KV
                                          else v[idx[0] - Q - KV])[idx[1]].item()
        qkvb = lambda idx, q=qb, k=kb, v=vb: (q[idx[0]] if idx[0] < Q else k[idx[0] - Q] if idx[0] < Q + KV
                                              else v[idx[0] - Q - KV]).item()
        add(e + "attn_norm", [H], hf(p + "input_layernorm.weight"))
        add(e + "qkv.weight", [Q + 2 * KV, H], qkv)
        # make sure q, k and v rows are each probed
        for r in (Q - 1, Q, Q + KV, Q + 2 * KV - 1):
            probes.append({"tensor": e + "qkv.weight", "kind": "bf16", "index": [r, r % H], "value": qkv([r, r % H])})
            probes.append({"tensor": e + "qkv.bias", "kind": "bf16", "index": [r], "value": qkvb([r])})
        add(e + "qkv.bias", [Q + 2 * KV], qkvb)
        add(e + "sinks", [cfg["num_attention_heads"]], hf(p + "self_attn.sinks"))
        add(e + "out.weight", [H, Q], hf(p + "self_attn.o_proj.weight"))
        add(e + "out.bias", [H], hf(p + "self_attn.o_proj.bias"))
        add(e + "mlp_norm", [H], hf(p + "post_attention_layernorm.weight"))
        add(e + "router.weight", list(T[p + "mlp.router.weight"].shape), hf(p + "mlp.router.weight"))
        add(e + "router.bias", list(T[p + "mlp.router.bias"].shape), hf(p + "mlp.router.bias"))
        w1, w2 = W[l]
        add(e + "mlp1", list(w1.shape), lambda idx, w=w1: w[tuple(idx)].item(), kind="mxfp4")
        add(e + "mlp2", list(w2.shape), lambda idx, w=w2: w[tuple(idx)].item(), kind="mxfp4")
        # nonzero MXFP4 elements too (random codes are often small)
        for w, name in ((w1, "mlp1"), (w2, "mlp2")):
            nz = (w != 0).nonzero()
            for j in range(min(4, nz.shape[0])):
                idx = [int(x) for x in nz[rng.randrange(nz.shape[0])]]
                probes.append({"tensor": e + name, "kind": "mxfp4", "index": idx, "value": w[tuple(idx)].item()})
        add(e + "mlp1.bias", list(T[p + "mlp.experts.gate_up_proj_bias"].shape), hf(p + "mlp.experts.gate_up_proj_bias"))
        add(e + "mlp2.bias", list(T[p + "mlp.experts.down_proj_bias"].shape), hf(p + "mlp.experts.down_proj_bias"))
    return probes


def engine_config(cfg):
    r, theta = rope_dict(cfg)
    return {
        "n_layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"],
        "intermediate": cfg["intermediate_size"], "n_heads": cfg["num_attention_heads"],
        "n_kv_heads": cfg["num_key_value_heads"], "head_dim": cfg["head_dim"],
        "n_experts": cfg["num_local_experts"],
        "experts_per_tok": int(cfg.get("num_experts_per_tok", cfg.get("experts_per_token"))),
        "vocab": cfg["vocab_size"], "sliding_window": cfg["sliding_window"],
        "sliding": layer_sliding(cfg), "rope_theta": float(theta), "rope_factor": float(r["factor"]),
        "initial_context": int(r["original_max_position_embeddings"]),
        "rope_beta_fast": float(r.get("beta_fast", 32.0)), "rope_beta_slow": float(r.get("beta_slow", 1.0)),
        "rms_eps": float(cfg["rms_norm_eps"]), "swiglu_limit": float(cfg.get("swiglu_limit", 7.0)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--checkpoint", help="Hugging Face checkpoint folder (config.json + model.safetensors)")
    ap.add_argument("--prompts", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts.json"))
    ap.add_argument("--out", help="golden JSON to write, e.g. tests/golden/tiny_seed1.json")
    ap.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda if available")
    ap.add_argument("--name", default=None,
                    help="synthetic config name given to export-model (default: config.json's gptoss_synthetic)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed given to export-model (default: config.json's gptoss_synthetic)")
    ap.add_argument("--gen", type=int, default=32, help="greedy tokens per prompt (>= 24)")
    ap.add_argument("--top", type=int, default=20, help="top logits kept at the last prompt position")
    ap.add_argument("--top-all", type=int, default=4, help="top logits kept at every position")
    ap.add_argument("--ref-tol", type=float, default=1e-3,
                    help="max |logit| difference allowed between transformers and the fp64 reference")
    ap.add_argument("--tie-eps", type=float, default=1e-3,
                    help="greedy steps whose top1-top2 gap is below this are reported as near ties")
    ap.add_argument("--no-reference-check", action="store_true", help="skip the fp64 reference")
    ap.add_argument("--no-hf-loader", action="store_true", help="skip the Mxfp4Config(dequantize=True) cross-check")
    ap.add_argument("--self-test", action="store_true", help="numpy-only unit checks, then exit")
    args = ap.parse_args()

    if args.self_test:
        self_test()
        return
    if not args.checkpoint or not args.out:
        ap.error("--checkpoint and --out are required (or --self-test)")
    if args.gen < 24:
        ap.error("--gen must be >= 24")
    self_test()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")          # local folders only, never the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    set_exact_fp32(torch)
    torch.manual_seed(0)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but torch.cuda.is_available() is False")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}, device {dev}"
          + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))

    with open(args.prompts) as f:
        prompts = json.load(f)["prompts"]
    if not prompts:
        fail(f"{args.prompts}: no prompts")
    cfg = read_config(args.checkpoint)
    layer_sliding(cfg)
    synth = str(cfg.get("gptoss_synthetic", ""))  # export-model writes e.g. "tiny, seed 1"
    s_name, _, s_seed = synth.partition(", seed ")
    if synth and s_seed.isdigit():
        if args.name is not None and args.name != s_name:
            fail(f"--name {args.name} but config.json says gptoss_synthetic {synth!r}")
        if args.seed is not None and args.seed != int(s_seed):
            fail(f"--seed {args.seed} but config.json says gptoss_synthetic {synth!r}")
        args.name, args.seed = s_name, int(s_seed)
    if args.name is None or args.seed is None:
        fail("config.json has no gptoss_synthetic \"NAME, seed N\": pass --name and --seed")
    print(f"checkpoint: synthetic {args.name}, seed {args.seed}")
    qc = cfg.get("quantization_config", {})
    if qc.get("quant_method") != "mxfp4":
        print(f"WARNING: config.json quantization_config is {qc!r}, expected quant_method mxfp4")
    for p in prompts:
        if not p["ids"] or max(p["ids"]) >= cfg["vocab_size"] or min(p["ids"]) < 0:
            fail(f"prompt {p['name']}: ids out of range for vocab {cfg['vocab_size']}")

    T = load_tensors(args.checkpoint, torch)
    validate_tensors(T, cfg, torch)
    W = dequant_experts(T, cfg, torch)
    sha = hashlib.sha256()
    for path in safetensors_files(args.checkpoint):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                sha.update(chunk)

    checks = {}
    failures = []
    model, info = build_manual(cfg, T, W, dev, torch, transformers)
    print(f"model: {info}")
    checks["rope"] = check_rope(model, cfg, torch)
    check_modules(model, cfg)
    checks["bf16_exact"] = True

    print(f"greedy (gen {args.gen}) and teacher-forced logits for {len(prompts)} prompts:")
    results = run_prompts(model, prompts, args.gen, args.top, args.top_all, dev, torch)

    # 1. independent fp64 reference
    if args.no_reference_check:
        checks["reference"] = "skipped (--no-reference-check)"
    else:
        ref = Reference(T, W, cfg, dev, torch)
        worst = 0.0
        per = {}
        for rec, tf, _ in results:
            lg = ref.logits(rec["ids"] + rec["greedy"]).cpu()
            d = float((lg - tf.double()).abs().max())
            per[rec["name"]] = d
            worst = max(worst, d)
        checks["reference"] = {"max_abs_logit_diff": worst, "per_prompt": per, "tol": args.ref_tol}
        print(f"fp64 spec reference vs transformers: max |logit diff| {worst:.3g} (tol {args.ref_tol})")
        if not worst <= args.ref_tol:
            failures.append(f"fp64 reference differs from transformers by {worst:.3g} > {args.ref_tol}: "
                            f"per prompt {per}")
        del ref

    # 2. transformers' own MXFP4 loader
    if args.no_hf_loader:
        checks["hf_loader"] = "skipped (--no-hf-loader)"
    else:
        try:
            m2, info2 = build_hf_loader(args.checkpoint, dev, torch, transformers)
        except Exception as e:  # noqa: BLE001 -- optional route
            m2 = None
            checks["hf_loader"] = f"unavailable: {type(e).__name__}: {str(e)[:300]}"
            print(f"note: transformers' Mxfp4Config(dequantize=True) loader not usable here: "
                  f"{type(e).__name__}: {str(e)[:300]}")
        if m2 is not None:
            sd1, sd2 = model.state_dict(), m2.state_dict()
            diff = [k for k in sd1 if k not in sd2 or sd1[k].shape != sd2[k].shape or not torch.equal(sd1[k], sd2[k])]
            extra = [k for k in sd2 if k not in sd1]
            with torch.no_grad():
                rec = results[-1][0]
                lg2 = m2(input_ids=torch.tensor([rec["ids"] + rec["greedy"]], device=dev),
                         use_cache=False).logits[0].float().cpu()
            d = float((lg2 - results[-1][1]).abs().max())
            checks["hf_loader"] = {"info": info2, "params_differing": diff[:20], "params_extra": extra[:20],
                                   "max_abs_logit_diff": d}
            print(f"transformers' MXFP4 loader: {len(diff)} parameters differ from the manual route, "
                  f"logits differ by {d:.3g}")
            if diff or extra or not d <= args.ref_tol:
                ref_ok = isinstance(checks.get("reference"), dict) and \
                    checks["reference"]["max_abs_logit_diff"] <= args.ref_tol
                failures.append(f"Mxfp4Config(dequantize=True) route disagrees with the manual route: "
                                f"params differing {diff[:10]}, extra {extra[:10]}, max logit diff {d:.3g}; "
                                f"the manual route {'AGREES' if ref_ok else 'does not agree'} with the fp64 "
                                f"spec reference" + (" (if transformers' loader is the odd one out, rerun "
                                                      "with --no-hf-loader and say so)" if ref_ok else ""))
            del m2

    near = {rec["name"]: [j for j, g in enumerate(rec["greedy_gap"]) if g < args.tie_eps]
            for rec, _, _ in results}
    near = {k: v for k, v in near.items() if v}
    if near:
        print(f"note: near-tie greedy steps (gap < {args.tie_eps}): {near}")
    consistency = {rec["name"]: c for rec, _, c in results}

    out = {
        "format": FORMAT,
        "model": {"name": args.name, "seed": args.seed,
                  "export_command": f"export-model --synthetic {args.name} DIR --seed {args.seed}",
                  "safetensors_sha256": sha.hexdigest(), "config": engine_config(cfg)},
        "generator": {"script": "tests/golden/make_golden.py", "torch": torch.__version__,
                      "transformers": transformers.__version__, "numpy": np.__version__,
                      "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
                      "dtype": "float32", "float32_matmul_precision": torch.get_float32_matmul_precision(),
                      "load": info, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "checks": checks, "consistency": consistency, "near_ties": near,
        "gen": args.gen, "top_last_k": args.top, "top_all_k": args.top_all,
        "probes": weight_probes(T, W, cfg),
        "prompts": [rec for rec, _, _ in results],
    }
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    # one prompt / probe per line: small diffs, still compact
    text = text.replace(',{"name":', ',\n{"name":').replace(',{"tensor":', ',\n{"tensor":')
    if failures:
        bad = args.out + ".failed.json"
        with open(bad, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        for m in failures:
            print(f"make_golden.py: CHECK FAILED: {m}", file=sys.stderr)
        fail(f"cross-checks failed; nothing written to {args.out} (diagnostics in {bad})")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"wrote {args.out} ({len(text) // 1024} KiB): {len(results)} prompts x {args.gen} greedy tokens, "
          f"{len(out['probes'])} weight probes")


if __name__ == "__main__":
    main()
