"""Pretrains the byte-level GPT of model.py on the corpus of corpus.py with
exact attention (SDPA, cuDNN backend) or MuSe, switched by --attention.

Everything but the attention is identical between the two: parameters and
their initialisation (seeded), the data order (seeded), the optimiser (AdamW),
the schedule (linear warm-up, cosine decay to --min-lr-ratio), bf16 autocast.

Writes to --out:
  config.json   the command, arguments, model size, corpus hashes, versions, GPU
  log.jsonl     one JSON object per line: {"step", "loss", "lr", "tokens_per_s",
                "train_s", "wall_s", "peak_mem_gb"} every --log-every steps,
                {"step", "val_loss", ...} every --val-every steps and at the end
  model.pt      the final weights and model config (with --save)

    python3 train.py --corpus work/corpus --out work/runs/sdpa --attention sdpa \\
        --context 16384 --batch 4 --steps 400
    PYTHONPATH=PREFIX/python python3 train.py ... --attention muse \\
        --muse-spec ../../specs/causal_d64_order1.yaml --muse-set near_clusters=4
"""

import argparse
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attention import (SDPA_BACKENDS, make_attention, parse_config, parse_overrides,  # noqa: E402
                       sdpa_attention)
from data import Corpus, TrainBatches, val_windows  # noqa: E402
from model import GPT, ModelConfig  # noqa: E402

# --fit-minutes times steps CALIBRATE_FROM+1 .. CALIBRATE_AT (the first ones
# include cuDNN plan creation and allocator growth).
CALIBRATE_FROM, CALIBRATE_AT = 5, 20

DEFAULT_MUSE_SPEC = os.path.normpath(os.path.join(HERE, "..", "..", "specs",
                                                  "causal_d64_order1.yaml"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="folder written by corpus.py")
    p.add_argument("--out", required=True, help="folder for config.json, log.jsonl, model.pt")
    p.add_argument("--attention", choices=("sdpa", "muse"), default="sdpa")
    p.add_argument("--sdpa-backend", choices=SDPA_BACKENDS, default="cudnn")
    p.add_argument("--muse-spec", default=DEFAULT_MUSE_SPEC,
                   help="causal MuSe spec: a YAML path or a file name in specs/ "
                        "(default causal_d64_order1.yaml)")
    p.add_argument("--muse-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a spec field (muse.attention keyword), repeatable")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--context", type=int, default=16384)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=-1,
                   help="warm-up steps (default: 5%% of --steps, at least 1)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--val-windows", type=int, default=8,
                   help="validation windows of --context bytes, evenly spaced over val.bin")
    p.add_argument("--val-exact", action="store_true",
                   help="with --attention muse, also log val_loss_exact (same weights, SDPA)")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="stop after this much training time (0: no limit); logged as truncated")
    p.add_argument("--fit-minutes", type=float, default=0,
                   help="lower --steps so that training takes about this long, from the step "
                        "time measured over steps %d-%d; needs --warmup > %d so the schedule "
                        "up to then is that of a run given the final --steps (recorded in "
                        "config.json)" % (CALIBRATE_FROM, CALIBRATE_AT, CALIBRATE_AT))
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--save", action="store_true", help="write model.pt at the end")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--d-model", type=int, default=ModelConfig.d_model)
    p.add_argument("--layers", type=int, default=ModelConfig.n_layers)
    p.add_argument("--heads", type=int, default=ModelConfig.n_heads)
    p.add_argument("--mlp-hidden", type=int, default=ModelConfig.mlp_hidden)
    a = p.parse_args(argv)
    for name in ("steps", "context", "batch", "log_every", "val_every", "val_windows"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1" % name.replace("_", "-"))
    if a.fit_minutes > 0 and (a.warmup <= CALIBRATE_AT or a.steps <= CALIBRATE_AT):
        p.error("--fit-minutes needs --warmup and --steps above %d" % CALIBRATE_AT)
    return a


def lr_at(step, args, warmup):
    """Linear warm-up to --lr, then cosine decay to lr * min_lr_ratio at --steps."""
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, args.steps - warmup))
    ratio = args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return args.lr * ratio


def make_optimizer(model, args):
    # No weight decay on norms (1-D parameters), as usual for GPT training.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused CUDA kernel: one launch for all parameters instead of several each.
    extra = {"fused": True} if args.device.startswith("cuda") else {}
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **extra)


def autocast(device):
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model, windows, device, batch):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch):
        w = windows[i:i + batch].to(device, non_blocking=True)
        with autocast(device):
            loss = model(w[:, :-1], w[:, 1:])
        total += loss.item() * w.shape[0]
        count += w.shape[0]
    model.train()
    return total / count


def environment(device):
    env = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                      mlp_hidden=args.mlp_hidden, max_context=args.context)
    overrides = parse_overrides(args.muse_set)
    spec = parse_config(args.muse_spec)[0]  # a bare name is looked up in specs/
    attend = make_attention(args.attention, args.sdpa_backend, spec, overrides)
    model = GPT(cfg, attend).to(device)
    corpus = Corpus(args.corpus)
    batches = TrainBatches(corpus.train, args.context, args.batch, args.seed)
    val = val_windows(corpus.val, args.context, args.val_windows)
    warmup = args.warmup if args.warmup >= 0 else max(1, args.steps // 20)
    opt = make_optimizer(model, args)
    step_model = torch.compile(model) if args.compile else model
    exact = sdpa_attention(args.sdpa_backend) if (args.val_exact and args.attention == "muse") \
        else None

    config_path = os.path.join(args.out, "config.json")
    config = {"argv": sys.argv, "args": vars(args), "model": cfg.to_dict(),
              "parameters": model.num_parameters(), "warmup": warmup,
              "attention": attend.description, "corpus": corpus.summary(),
              "tokens_per_step": args.batch * args.context, "env": environment(device)}
    with open(config_path, "w") as f:
        json.dump(config, f, indent=1)
    log = open(os.path.join(args.out, "log.jsonl"), "w")

    def emit(record):
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record), flush=True)

    def validate(step):
        rec = {"step": step, "val_loss": evaluate(model, val, device, args.batch)}
        if exact is not None:
            model.set_attention(exact)
            rec["val_loss_exact"] = evaluate(model, val, device, args.batch)
            model.set_attention(attend)
        rec["train_s"] = round(train_s, 3)
        rec["wall_s"] = round(time.perf_counter() - t_start, 3)
        emit(rec)

    print("model: %.2fM parameters, %s, context %d, batch %d, %d steps"
          % (model.num_parameters() / 1e6, attend.description, args.context, args.batch,
             args.steps), flush=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t_start = time.perf_counter()
    train_s = 0.0  # time inside training steps only (validation excluded)
    losses = []
    interval_start, interval_steps = time.perf_counter(), 0
    truncated = False
    step = 0
    calib_start = None
    while step < args.steps:
        lr = lr_at(step, args, warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        w = batches.next().to(device, non_blocking=True)
        with autocast(device):
            loss = step_model(w[:, :-1], w[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        interval_steps += 1
        if args.fit_minutes > 0 and step + 1 in (CALIBRATE_FROM, CALIBRATE_AT):
            sync(device)
            if step + 1 == CALIBRATE_FROM:
                calib_start = time.perf_counter()
            else:
                per_step = (time.perf_counter() - calib_start) / (CALIBRATE_AT - CALIBRATE_FROM)
                fitted = int(60 * args.fit_minutes / per_step)
                args.steps = max(CALIBRATE_AT + 1, min(args.steps, fitted))
                config["args"]["steps"] = args.steps
                config["fitted"] = {"step_s": per_step, "steps": args.steps}
                with open(config_path, "w") as f:
                    json.dump(config, f, indent=1)
                emit({"step": step + 1, "fitted_steps": args.steps,
                      "step_s": round(per_step, 5)})
        last = step + 1 == args.steps
        if (step + 1) % args.log_every == 0 or last:
            sync(device)
            now = time.perf_counter()
            dt = now - interval_start
            train_s += dt
            mean = torch.stack(losses).float().mean().item()
            if not math.isfinite(mean):
                emit({"step": step + 1, "error": "non-finite loss %r" % mean})
                raise SystemExit("train: the loss is not finite at step %d" % (step + 1))
            rec = {"step": step + 1, "loss": round(mean, 5), "lr": lr,
                   "tokens_per_s": round(interval_steps * args.batch * args.context / dt, 1),
                   "train_s": round(train_s, 3), "wall_s": round(now - t_start, 3)}
            if device.startswith("cuda"):
                rec["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            emit(rec)
            losses.clear()
            if (step + 1) % args.val_every == 0 and not last:
                validate(step + 1)
            interval_start, interval_steps = time.perf_counter(), 0
            if args.max_minutes > 0 and train_s > 60 * args.max_minutes and not last:
                truncated = True
                step += 1
                break
        step += 1
    steps_done = step
    validate(steps_done)
    summary = {"done": True, "steps": steps_done, "truncated": truncated,
               "train_s": round(train_s, 3),
               "mean_tokens_per_s": round(steps_done * args.batch * args.context / train_s, 1)}
    emit(summary)
    log.close()
    if args.save:
        torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "steps": steps_done},
                   os.path.join(args.out, "model.pt"))


if __name__ == "__main__":
    main()
