"""hf_bf16_error.py: how far Hugging Face transformers' own bf16 forward is from the fp32
reference on the same weights: issue 14's bar for the GPU's `--precision fast`.

check-top1 MODEL --dump DIR writes the teacher-forced token ids (DIR/tokens.i32) and the CPU
engine's fp32 logits at every position (DIR/cpu_logits.f32, n x V); MODEL is the engine export of
the Hugging Face checkpoint given here. This script loads that checkpoint as a transformers user
would for bf16 (`from_pretrained` with `Mxfp4Config(dequantize=True)` and dtype bfloat16, eager
attention), runs the same tokens as one sequence, and reports, against the CPU engine's logits,
the same measures check-top1 prints for the GPU paths (per position: relative L2 error of the
logit vector, and whether the argmax agrees; then median and worst over positions).
`--dtype float32` runs the same in fp32 (a check that the files line up: ~1e-6 expected).

Usage (GPU machine; see docs/gpu.md "Precision"):
  python3 tests/golden/hf_bf16_error.py --checkpoint HF_DIR --dump DIR --out result.json
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def fail(msg):
    print(f"hf_bf16_error: {msg}", file=sys.stderr)
    sys.exit(1)


def load_model(ckpt, dtype, device, torch, transformers):
    from transformers import Mxfp4Config
    qc = Mxfp4Config(dequantize=True)
    last = None
    for kw in ({"device_map": device}, {}):  # device_map needs accelerate; else load, then move
        for dkey in ("dtype", "torch_dtype"):
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    ckpt, quantization_config=qc, attn_implementation="eager",
                    **{dkey: dtype}, **kw)
                return model.to(device).eval()
            except (TypeError, ImportError, ValueError) as e:
                last = e
    fail(f"transformers could not load {ckpt}: {last}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="Hugging Face layout directory")
    ap.add_argument("--dump", required=True, help="check-top1 --dump directory")
    ap.add_argument("--out", required=True, help="JSON result")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    import torch
    import transformers

    ids = np.fromfile(os.path.join(args.dump, "tokens.i32"), dtype=np.int32)
    ref = np.fromfile(os.path.join(args.dump, "cpu_logits.f32"), dtype=np.float32)
    if ids.size == 0 or ref.size % ids.size != 0:
        fail(f"{args.dump}: {ids.size} tokens and {ref.size} logits do not line up")
    ref = ref.reshape(ids.size, -1)
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    t0 = time.time()
    model = load_model(args.checkpoint, dtype, args.device, torch, transformers)
    if dtype == torch.float32:
        # Mxfp4Config(dequantize=True) leaves the experts in bf16 whatever dtype was asked for;
        # their values (E2M1 x 2^k) are exact in bf16, so .float() is lossless.
        model = model.float()
    load_s = time.time() - t0
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if dtypes != [str(dtype)]:
        fail(f"parameters are {dtypes} after loading, want {dtype}")
    V = model.config.vocab_size
    if V != ref.shape[1]:
        fail(f"vocab {V} in the checkpoint, {ref.shape[1]} logits per position in the dump")

    t0 = time.time()
    with torch.no_grad():
        x = torch.tensor(ids.astype(np.int64)[None], device=args.device)
        got = model(x).logits[0].float().cpu().numpy()
    fwd_s = time.time() - t0

    rel = np.sqrt(((got.astype(np.float64) - ref) ** 2).sum(1) / np.maximum((ref.astype(np.float64) ** 2).sum(1), 1e-30))
    agree = int((got.argmax(1) == ref.argmax(1)).sum())
    res = {
        "path": f"transformers {args.dtype} forward vs CPU engine",
        "n": int(ids.size), "top1_equal": agree,
        "rel_l2_median": float(np.median(rel)), "rel_l2_worst": float(rel.max()),
        "transformers": transformers.__version__, "torch": torch.__version__,
        "experts_implementation": str(getattr(model.config, "_experts_implementation", "n/a")),
        "attn_implementation": str(getattr(model.config, "_attn_implementation", "n/a")),
        "load_s": round(load_s, 1), "forward_s": round(fwd_s, 2),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
    }
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"{res['path']}: top-1 equal {agree}/{ids.size}, logits rel L2 median "
          f"{res['rel_l2_median']:.3g}, worst {res['rel_l2_worst']:.3g} (load {load_s:.0f} s)")


if __name__ == "__main__":
    main()
