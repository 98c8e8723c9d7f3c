"""GPT-2 forward pass in PyTorch, reading a Hugging Face GPT-2 directory as `weft checkpoint export`
writes it (config.json + model.safetensors; the safetensors file is parsed here, no extra
packages needed). It is the outside check that exported weights mean the same in PyTorch.

usage: python3 gpt2_reference.py HF_DIR IDS_JSON OUT_F32
  IDS_JSON  a JSON list of token ids (one sequence)
  OUT_F32   where to write the logits, (T, V) float32 little-endian; for a
            GPT2ForSequenceClassification (a reward model) the reward instead, (1,) float32:
            the score head on the final hidden state of the last token
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + begin : base + end]), dtype=torch.float32)
        tensors[name] = t.reshape(info["shape"])
    return tensors


def layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5)


def forward(cfg, p, idx):
    t = idx.shape[0]
    c, nh = cfg["n_embd"], cfg["n_head"]
    hs = c // nh
    x = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        g = lambda name: p[f"transformer.h.{l}.{name}"]
        h = layer_norm(x, g("ln_1.weight"), g("ln_1.bias"))
        qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")  # Conv1D: [in, out]
        q, k, v = (z.view(t, nh, hs).transpose(0, 1) for z in qkv.split(c, dim=1))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(0, 1).reshape(t, c)
        x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
        h = layer_norm(x, g("ln_2.weight"), g("ln_2.bias"))
        h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh")
        x = x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
    return layer_norm(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])


def main():
    hf_dir, ids_json, out_path = sys.argv[1:4]
    with open(f"{hf_dir}/config.json") as f:
        cfg = json.load(f)
    params = read_safetensors(f"{hf_dir}/model.safetensors")
    idx = torch.tensor(json.loads(ids_json), dtype=torch.long)
    with torch.no_grad():
        hidden = forward(cfg, params, idx)
        if "GPT2ForSequenceClassification" in cfg.get("architectures", []):
            out = (hidden[-1:] @ params["score.weight"].t()).reshape(-1)
        else:
            out = hidden @ params["transformer.wte.weight"].t()  # the head is tied to wte
    with open(out_path, "wb") as f:
        f.write(out.contiguous().numpy().astype("<f4").tobytes())


if __name__ == "__main__":
    main()
