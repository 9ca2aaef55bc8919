"""golden_reference.py: make_golden.py's independent fp64 forward of gpt-oss-spec.md, reading the
checkpoint tensors directly (not the Hugging Face model): the cross-check of transformers' logits."""
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

from golden_ckpt import yarn_inv_freq, rope_dict, layer_sliding

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
