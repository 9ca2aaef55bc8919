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
from golden_ckpt import fail, yarn_inv_freq, self_test, read_config, rope_dict, layer_sliding, safetensors_files, load_tensors, validate_tensors, dequant_experts
from golden_reference import Reference

FORMAT = "gptoss-golden-1"


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
