"""golden_ckpt.py: the checkpoint side of make_golden.py: MXFP4 decoding (numpy only, so
--self-test runs anywhere), YaRN inv_freq from gpt-oss-spec.md, reading and validating a
synthetic gpt-oss checkpoint (config, safetensors) and dequantizing its experts."""
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
