#!/usr/bin/env python3
"""PyTorch anchors for benchmarks/train_throughput.ts, written the way a PyTorch user writes a training loop:

    model = timm.create_model(f'convnext_{variant}', num_classes=2)            # (+ torch.compile(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)                 # PyTorch's defaults
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)   # num_workers=0 (the default)
    for x, y in loader:                                                        # one rep = one epoch
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()                                                   # what every loop logs

Nothing is set that a user would not set: no thread count, no environment variable, no allocator (the
driver passes its own environment through unchanged). `--mode compile` wraps the model in `torch.compile`
(default mode); the compilation happens in the first step, whose time is reported as `compileSeconds`.
On CUDA: `--precision bf16-mixed|16-mixed` adds `torch.autocast` (+ GradScaler for fp16) and
`--channels-last` converts model and inputs, as the AMP recipe tells users to.

Driven by train_throughput.ts: prints {"ready":…}, then per stdin line "rep" trains one epoch and answers
{"seconds":…}; "done" answers {"maxRssKb":…} and exits. Stand-alone: `--reps N` prints one JSON line.
"""
import argparse
import json
import resource
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variant', default='atto')
    p.add_argument('--height', type=int, default=128)
    p.add_argument('--width', type=int, default=32)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=10, help='batches per epoch (= per rep)')
    p.add_argument('--mode', default='eager', choices=['eager', 'compile'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--precision', default='32', choices=['32', 'bf16-mixed', '16-mixed'])
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--reps', type=int, default=3, help='timed reps (stand-alone mode)')
    p.add_argument('--warmup', type=int, default=1, help='untimed reps first (stand-alone mode)')
    p.add_argument('--serve', action='store_true', help='take "rep"/"done" commands on stdin (used by the .ts)')
    return p.parse_args(argv)


def max_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class Anchor:
    def __init__(self, a):
        import torch
        import torch.nn.functional as F
        import timm
        from torch.utils.data import DataLoader, TensorDataset

        self.torch, self.F, self.a = torch, F, a
        torch.manual_seed(42)
        self.dev = torch.device(a.device)
        model = timm.create_model(f'convnext_{a.variant}', num_classes=2).to(self.dev)
        if a.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        self.model = torch.compile(model) if a.mode == 'compile' else model
        self.amp_dtype = {'bf16-mixed': torch.bfloat16, '16-mixed': torch.float16}.get(a.precision)
        self.scaler = torch.amp.GradScaler(self.dev.type) if a.precision == '16-mixed' else None
        n = a.batch * a.steps
        x = torch.rand(n, 3, a.height, a.width)
        y = torch.rand(n, 2) * 2 - 1
        cuda = self.dev.type == 'cuda'
        self.loader = DataLoader(TensorDataset(x, y), batch_size=a.batch, shuffle=True, pin_memory=cuda)
        self.compile_seconds = None
        if a.mode == 'compile':  # the first step compiles (forward and backward graphs)
            t0 = time.perf_counter()
            xb, yb = next(iter(self.loader))
            self.step(xb, yb)
            self.sync()
            self.compile_seconds = time.perf_counter() - t0

    def sync(self):
        if self.dev.type == 'cuda':
            self.torch.cuda.synchronize(self.dev)

    def step(self, xb, yb):
        torch, F = self.torch, self.F
        cuda = self.dev.type == 'cuda'
        xb, yb = xb.to(self.dev, non_blocking=cuda), yb.to(self.dev, non_blocking=cuda)
        if self.a.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad()
        if self.amp_dtype is not None:
            with torch.autocast(self.dev.type, dtype=self.amp_dtype):
                loss = F.mse_loss(self.model(xb).float(), yb)
        else:
            loss = F.mse_loss(self.model(xb), yb)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.item()

    def rep(self):
        """One epoch over the DataLoader; returns (seconds, mean loss)."""
        self.sync()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for xb, yb in self.loader:
            total += self.step(xb, yb)
            count += 1
        self.sync()
        return time.perf_counter() - t0, total / max(1, count)


def main(argv=None):
    a = parse_args(argv)
    b = Anchor(a)
    torch = b.torch
    info = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'device': str(b.dev), 'mode': a.mode,
            'compileSeconds': b.compile_seconds, 'rssReadyKb': max_rss_kb()}
    if b.dev.type == 'cuda':
        info['deviceName'] = torch.cuda.get_device_name(b.dev)
    if a.serve:
        print(json.dumps({'ready': True, **info}), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == 'rep':
                secs, loss = b.rep()
                print(json.dumps({'seconds': secs, 'loss': loss}), flush=True)
            elif cmd == 'done':
                out = {'maxRssKb': max_rss_kb()}
                if b.dev.type == 'cuda':
                    out['maxCudaAllocatedMb'] = torch.cuda.max_memory_allocated(b.dev) / 2**20
                print(json.dumps(out), flush=True)
                return
            elif cmd:
                print(json.dumps({'error': f'unknown command {cmd!r}'}), flush=True)
        return
    for _ in range(a.warmup):
        b.rep()
    secs = [b.rep()[0] for _ in range(a.reps)]
    med = sorted(secs)[len(secs) // 2]
    print(json.dumps({**info, 'variant': a.variant, 'shape': [3, a.height, a.width], 'batch': a.batch,
                      'steps': a.steps, 'seconds': secs, 'imagesPerSec': a.batch * a.steps / med,
                      'maxRssKb': max_rss_kb()}))


if __name__ == '__main__':
    main()
