#!/usr/bin/env python3
"""The PyTorch side of bench/train.sh.

  speed    one standard-SAE training step as `sae train` does it (encoder,
           ReLU, decoder, loss |x - x^|^2 + l1 * sum_i f_i |W_dec,i|, backward,
           Adam), timed after a warm-up step; prints JSON.
  gen      the issue's generator in plain Python (no numpy needed): g random
           unit directions in d dims, each active with probability p, with a
           coefficient uniform in [0, 1]; writes rows and truth as float32 .npy.
  recover  trains that SAE with `sae train`'s default settings (inputs scaled
           to E|x| = sqrt(d), b_dec = data mean, W_dec = W_enc^T with rows of
           norm 0.1, l1 1 warmed up over 5% of steps, Adam lr 4e-3 warmed up
           over 5% of steps and decayed to 0 over the last 20%, batch 1024,
           20 passes or at least 2000 steps) but without resampling, and
           prints its MMCS against the truth and the seconds it took.
"""
import argparse
import json
import math
import random
import struct
import sys
import time


def write_npy(path, rows, cols, flat):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    pad = 64 - (10 + len(header) + 1) % 64
    header += " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(flat), *flat))


def read_npy(path):
    import numpy as np
    return np.load(path)


def cmd_gen(a):
    rng = random.Random(a.seed)
    g, d = a.g, a.d
    dirs = []
    for _ in range(g):
        v = [rng.gauss(0, 1) for _ in range(d)]
        n = math.sqrt(sum(x * x for x in v))
        dirs.append([x / n for x in v])
    flat = []
    for _ in range(a.rows):
        row = [0.0] * d
        for t in range(g):
            if rng.random() < a.p:
                c = rng.random()
                dt = dirs[t]
                for j in range(d):
                    row[j] += c * dt[j]
        flat.extend(row)
    write_npy(a.out, a.rows, d, flat)
    write_npy(a.truth, g, d, [x for v in dirs for x in v])


def make_sae(torch, d_in, d_sae, data_mean, init_norm, gen):
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * init_norm
    p = {
        "w_enc": w_dec.t().clone().contiguous().requires_grad_(),
        "b_enc": torch.zeros(d_sae, requires_grad=True),
        "w_dec": w_dec.clone().requires_grad_(),
        "b_dec": data_mean.clone().requires_grad_(),
    }
    return p


def step_loss(p, x, l1):
    f = torch_relu((x - p["b_dec"]) @ p["w_enc"] + p["b_enc"])
    xhat = f @ p["w_dec"] + p["b_dec"]
    mse = ((x - xhat) ** 2).sum(dim=1).mean()
    sparsity = (f * p["w_dec"].norm(dim=1)).sum(dim=1).mean()
    return mse + l1 * sparsity, mse, f


def cmd_speed(a):
    import torch
    global torch_relu
    torch_relu = torch.relu
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(a.batch, a.d_in, generator=gen)
    p = make_sae(torch, a.d_in, a.d_sae, x.mean(0), 0.1, gen)
    opt = torch.optim.Adam(list(p.values()), lr=4e-3, betas=(0.9, 0.999), eps=1e-8)
    times = []
    for s in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _, _ = step_loss(p, x, 1.0)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step_s = sum(times[1:]) / (len(times) - 1)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "d_in": a.d_in, "d_sae": a.d_sae, "batch": a.batch,
                      "steps_timed": a.steps - 1, "train_step_s": round(step_s, 4),
                      "train_tokens_per_s": round(a.batch / step_s, 1),
                      "gflops": round(10 * a.batch * a.d_in * a.d_sae / step_s * 1e-9, 1)}))


def cmd_recover(a):
    import torch
    global torch_relu
    torch_relu = torch.relu
    torch.set_num_threads(a.threads)
    x_all = torch.from_numpy(read_npy(a.data).copy())
    truth = torch.from_numpy(read_npy(a.truth).copy())
    n, d = x_all.shape
    t0 = time.perf_counter()
    scale = math.sqrt(d) / x_all.norm(dim=1).mean().item()
    x_all = x_all * scale
    batch = 1024
    steps = max(2000, min(50000, int(20 * n / batch)))
    warm = min(1000, steps // 20)
    decay = int(0.2 * steps)
    l1_warm = int(0.05 * steps)
    gen = torch.Generator().manual_seed(a.seed)
    p = make_sae(torch, d, a.d_sae, x_all.mean(0), 0.1, gen)
    opt = torch.optim.Adam(list(p.values()), lr=4e-3, betas=(0.9, 0.999), eps=1e-8)
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for s in range(steps):
        lr = 4e-3 * (min(1.0, (s + 1) / warm) if warm else 1.0)
        if decay and s >= steps - decay:
            lr *= (steps - s) / decay
        for g in opt.param_groups:
            g["lr"] = lr
        lam = 1.0 * min(1.0, (s + 1) / l1_warm) if l1_warm else 1.0
        if pos + batch > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        xb = x_all[perm[pos:pos + batch]]
        pos += batch
        opt.zero_grad(set_to_none=True)
        loss, _, _ = step_loss(p, xb, lam)
        loss.backward()
        opt.step()
    secs = time.perf_counter() - t0
    with torch.no_grad():
        wd = p["w_dec"] / p["w_dec"].norm(dim=1, keepdim=True).clamp_min(1e-12)
        tr = truth / truth.norm(dim=1, keepdim=True)
        mmcs = (tr @ wd.t()).max(dim=1).values.mean().item()
    print(json.dumps({"torch_recover": {"d_sae": a.d_sae, "steps": steps, "batch": batch,
                                        "seconds": round(secs, 1), "mmcs": round(mmcs, 4),
                                        "threads": torch.get_num_threads()}}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--d-in", type=int, default=768)
    s.add_argument("--d-sae", type=int, default=24576)
    s.add_argument("--batch", type=int, default=4096)
    s.add_argument("--steps", type=int, default=4)
    s.add_argument("--threads", type=int, default=2)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--truth", required=True)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--rows", type=int, default=100000)
    g.add_argument("--g", type=int, default=256)
    g.add_argument("--d", type=int, default=64)
    g.add_argument("--p", type=float, default=0.02)
    r = sub.add_parser("recover")
    r.add_argument("--data", required=True)
    r.add_argument("--truth", required=True)
    r.add_argument("--d-sae", type=int, default=256)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    {"speed": cmd_speed, "gen": cmd_gen, "recover": cmd_recover}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
