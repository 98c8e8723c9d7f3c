"""Makes the PyTorch reference fixture tests/fixtures/sft-tiny.{json,safetensors}: a tiny GPT-2
trained on a supervised fine-tuning (SFT) batch, in the "gpt2-reference-fixture" format of
tests/fixtures/README.md (so tests/model/gpt2.fixtures.test.ts checks its logits, loss, every
gradient and the AdamW steps with no code change).

What makes it SFT: each row is a chat "conversation" laid out by a chat template,
    <user> text... <eot> <assistant>   reply... <eot>   [<user> ... <assistant> reply... <eot>]   0 0 ...
and only the assistant replies are trained: targets[t] = idx[t+1] where idx[t+1] is a reply token
(the closing <eot> included), -1 on the prompt, after each reply's <eot> and on the padding (token 0
in idx). The loss is exactly
    F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
the mean over the non-ignored targets of the whole batch. Row 0 has two user turns and so two
separate trained spans, row 1 an empty reply (its <eot> is the single trained token), row 2 fills
all T columns (and has a real token 0 in its reply, so 0 is not only padding).

The model, the AdamW semantics and the safetensors layout are the README's; everything is written
here with the standard library and torch only, float32 on the CPU, one thread, fixed seed, so two
runs give the same bytes.

usage (a python3 that has torch, e.g. Debian's /usr/bin/python3 with `apt-get install python3-torch`):
    python3 scripts/make_sft_fixture.py
writes tests/fixtures/sft-tiny.json and tests/fixtures/sft-tiny.safetensors.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

NAME = "sft-tiny"
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

CONFIG = {"nLayer": 2, "nHead": 2, "nEmbd": 32, "blockSize": 16, "vocabSize": 71}
B, T = 3, 14
SEED = 1234
OPTIMIZER = {
    "lr": 0.001,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-08,
    "weight_decay": 0.1,
    "grad_clip": 2.2,  # steps 0 and 1 are clipped, 2..9 are not
    "steps": 10,
}

V = CONFIG["vocabSize"]
EOT = V - 1  # end of turn
ASSISTANT = V - 2  # role markers of the chat template
USER = V - 3
PAD = 0
N_TEXT = V - 3  # ordinary tokens are 0..N_TEXT-1


def param_shapes(cfg):
    """HF GPT-2 names and shapes (Conv1D weights are [in, out]), in the HF order."""
    c, v, n = cfg["nEmbd"], cfg["vocabSize"], cfg["blockSize"]
    shapes = [("wte.weight", [v, c]), ("wpe.weight", [n, c])]
    for l in range(cfg["nLayer"]):
        p = f"h.{l}."
        shapes += [
            (p + "ln_1.weight", [c]),
            (p + "ln_1.bias", [c]),
            (p + "attn.c_attn.weight", [c, 3 * c]),
            (p + "attn.c_attn.bias", [3 * c]),
            (p + "attn.c_proj.weight", [c, c]),
            (p + "attn.c_proj.bias", [c]),
            (p + "ln_2.weight", [c]),
            (p + "ln_2.bias", [c]),
            (p + "mlp.c_fc.weight", [c, 4 * c]),
            (p + "mlp.c_fc.bias", [4 * c]),
            (p + "mlp.c_proj.weight", [4 * c, c]),
            (p + "mlp.c_proj.bias", [c]),
        ]
    shapes += [("ln_f.weight", [c]), ("ln_f.bias", [c])]
    return shapes


def init_params(cfg):
    """Weights N(0, 0.02^2), biases N(0, 0.02^2) (so bias gradients are not trivial), LayerNorm
    weights 1 + N(0, 0.1^2) and biases N(0, 0.05^2), drawn in HF order from the seeded generator."""
    params = {}
    for name, shape in param_shapes(cfg):
        if ".ln_" in name or name.startswith("ln_f"):
            if name.endswith(".weight"):
                t = 1.0 + 0.1 * torch.randn(shape)
            else:
                t = 0.05 * torch.randn(shape)
        else:
            t = 0.02 * torch.randn(shape)
        params[name] = t.to(torch.float32).requires_grad_(True)
    return params


def layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5)


def forward(cfg, p, idx):
    """Logits [B,T,V] of GPT-2 with the head tied to wte."""
    b, t = idx.shape
    c, nh = cfg["nEmbd"], cfg["nHead"]
    hs = c // nh
    x = p["wte.weight"][idx] + p["wpe.weight"][:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(cfg["nLayer"]):
        g = lambda name: p[f"h.{l}.{name}"]
        h = layer_norm(x, g("ln_1.weight"), g("ln_1.bias"))
        qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")  # Conv1D: [in, out]
        q, k, v = (z.view(b, t, nh, hs).transpose(1, 2) for z in qkv.split(c, dim=2))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
        h = layer_norm(x, g("ln_2.weight"), g("ln_2.bias"))
        h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh")
        x = x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"])
    return x @ p["wte.weight"].t()


def sft_loss(logits, targets):
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)


def text(n):
    """n ordinary tokens from the seeded generator (ids 1..N_TEXT-1)."""
    return torch.randint(1, N_TEXT, (n,)).tolist()


def conversation(turns):
    """A row from [(user_len, reply_len), ...]: idx and targets (length T) and the trained spans
    [first, last] of target positions."""
    idx, targets, spans = [], [], []
    for user_len, reply_len in turns:
        prompt = [USER] + text(user_len) + [EOT, ASSISTANT]
        reply = text(reply_len - 1) + [EOT]
        idx += prompt
        first = len(idx) - 1  # the <assistant> marker predicts the first reply token
        idx += reply
        spans.append([first, len(idx) - 2])
    assert len(idx) <= T, idx
    n = len(idx)
    idx += [PAD] * (T - n)
    targets = [-1] * T
    for first, last in spans:
        for t in range(first, last + 1):
            targets[t] = idx[t + 1]
    return idx, targets, spans, n


def make_batch():
    rows = [
        conversation([(1, 3), (1, 2)]),  # two user turns: two trained spans, then 1 pad
        conversation([(3, 1)]),  # an empty reply: its <eot> is the only target, then 7 pads
        conversation([(2, 9)]),  # fills all T columns
    ]
    assert [r[3] for r in rows] == [13, 7, 14]
    rows[2][0][8] = 0  # a real token 0 inside the reply (the target at 7 becomes 0 too)
    rows[2][1][7] = 0
    idx = torch.tensor([r[0] for r in rows], dtype=torch.long)
    targets = torch.tensor([r[1] for r in rows], dtype=torch.long)
    return idx, targets, [r[2] for r in rows], [r[3] for r in rows]


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor) in file order; float32 -> F32, integer -> I32."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        if t.is_floating_point():
            dtype, data = "F32", t.to(torch.float32).numpy().astype("<f4").tobytes()
        else:
            dtype, data = "I32", t.to(torch.int32).numpy().astype("<i4").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for data in blobs:
            f.write(data)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    cfg = CONFIG
    idx, targets, spans, lengths = make_batch()
    params = init_params(cfg)
    names = [name for name, _ in param_shapes(cfg)]
    initial = {n: params[n].detach().clone() for n in names}

    o = OPTIMIZER
    decay = [params[n] for n in names if params[n].dim() >= 2]
    no_decay = [params[n] for n in names if params[n].dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": o["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=o["lr"],
        betas=(o["beta1"], o["beta2"]),
        eps=o["eps"],
        foreach=False,
    )

    step_losses, step_norms = [], []
    for s in range(o["steps"]):
        opt.zero_grad(set_to_none=True)
        logits = forward(cfg, params, idx)
        loss = sft_loss(logits, targets)
        loss.backward()
        if s == 0:
            logits0 = logits.detach().clone()
            loss0 = loss.item()
            grads0 = {n: params[n].grad.detach().clone() for n in names}
        norm = torch.nn.utils.clip_grad_norm_([params[n] for n in names], o["grad_clip"])
        # a norm this close to the clip threshold would make the fixture fragile
        assert abs(norm.item() - o["grad_clip"]) > 1e-3, norm.item()
        step_losses.append(loss.item())
        step_norms.append(norm.item())
        opt.step()

    tensors = [
        ("idx", idx),
        ("targets", targets),
        ("logits", logits0),
    ]
    for n in names:
        tensors += [
            (f"param/{n}", initial[n]),
            (f"grad/{n}", grads0[n]),
            (f"final/{n}", params[n]),
        ]
    write_safetensors(os.path.join(OUT_DIR, f"{NAME}.safetensors"), tensors)

    ignored = int((targets == -1).sum())
    meta = {
        "format": "gpt2-reference-fixture",
        "version": 1,
        "generator": f"PyTorch {torch.__version__} float32 CPU",
        "description": (
            "SFT masking: chat-template rows (<user> text <eot> <assistant> reply <eot> ..., "
            "then pad 0) where only assistant replies, closing <eot> included, are targets; "
            "loss = F.cross_entropy(logits.view(-1,V), targets.view(-1), ignore_index=-1). "
            "Made by scripts/make_sft_fixture.py."
        ),
        "config": cfg,
        "batch": {"B": B, "T": T, "ignoredTargets": ignored},
        "sft": {
            "user": USER,
            "assistant": ASSISTANT,
            "endOfTurn": EOT,
            "pad": PAD,
            "rowLengths": lengths,
            "trainedSpans": spans,
            "targets": B * T - ignored,
        },
        "loss": loss0,
        "optimizer": o,
        "stepLosses": step_losses,
        "stepGradNormsBeforeClip": step_norms,
        "tensors": {
            "idx": "[B,T] int32 input token ids",
            "targets": "[B,T] int32 next-token targets, -1 = ignored (prompt, after <eot>, padding)",
            "logits": "[B,T,V] float32 logits of the initial parameters",
            "param/<name>": "initial parameters, HF GPT-2 names and layouts (Conv1D weights are [in,out])",
            "grad/<name>": "gradient of the mean loss w.r.t. each initial parameter",
            "final/<name>": "parameters after the optimizer steps (same batch every step)",
        },
    }
    with open(os.path.join(OUT_DIR, f"{NAME}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {NAME}: loss {loss0:.6f}, targets {B * T - ignored}, norms {step_norms}")


if __name__ == "__main__":
    main()
