"""PyTorch side of scripts/bench-generate.ts: greedy decoding of one weft config's GPT-2 (the
model of bench_step_torch.py, random weights) with and without a KV cache; prints one JSON line
with the time to first token and the tokens/s after it for each (the best of --repeats runs).

usage: python3 bench_generate_torch.py CONFIG_JSON --prompt P --tokens N --recompute-tokens M --threads K
"""
import argparse
import json
import time

import torch

from bench_step_torch import GPT


@torch.no_grad()
def decode(model, prompt, n, cached):
    """Greedy: returns (seconds to the first new token, seconds for the n - 1 after it)."""
    start = time.perf_counter()
    caches = [{} for _ in model.h] if cached else None
    ids = prompt
    logits = model.logits(ids, caches)
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    first = time.perf_counter() - start
    ids = torch.cat([ids, nxt], 1)
    for _ in range(n - 1):
        if cached:
            logits = model.logits(nxt, caches, pos=ids.shape[1] - 1)
        else:
            logits = model.logits(ids)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    return first, time.perf_counter() - start - first


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--recompute-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    cfg = json.loads(args.config)
    model = GPT(cfg).eval()
    prompt = torch.randint(0, cfg["vocabSize"], (1, args.prompt))
    decode(model, prompt, 4, True)  # warm-up
    out = {"torch": torch.__version__, "threads": args.threads}
    for name, cached, n in (("cache", True, args.tokens), ("recompute", False, args.recompute_tokens)):
        runs = [decode(model, prompt, n, cached) for _ in range(args.repeats)]
        first = min(r[0] for r in runs)
        rest = min(r[1] for r in runs)
        out[name] = {"ttftMs": first * 1000, "tokensPerSec": (n - 1) / rest}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
