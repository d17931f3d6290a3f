#!/usr/bin/env python3
"""PyTorch-eager anchor for benchmarks/train_throughput.ts: one training step of a timm ConvNeXt
(forward + loss + backward + AdamW step + zero_grad), timed the way the addon's step is timed.

The workload mirrors what heimdall-torch's engine does per batch (native/train/engine.cc):
  * model: timm `convnext_<variant>` with a 2-output regression head (timm's own head: pool → LayerNorm
    → Linear), the same module tree and parameter shapes as the addon's `head: 'regression', outputs: 2`;
  * loss: MSE in float32 (autocast off for the loss, as the engine does), `loss.item()` every step (the
    engine reads the loss every step too, to check it is finite and to report it);
  * optimizer: AdamW lr 1e-3, weight decay 1e-5 on ≥2-D weights only (timm's rule, as the engine),
    PyTorch's default implementation for the device (--optimizer default: the for-loop kernel on CPU, the
    foreach kernels on CUDA); `--optimizer fused` gives the fused kernel the addon uses;
  * data: a fixed synthetic data set, a fresh random permutation per rep, `index_select` per batch
    (what the addon's loader does), pinned + non_blocking copies on CUDA;
  * mixed precision: torch.autocast(bf16 | fp16) around the forward, GradScaler for fp16, channels_last.

Two modes:
  python3 train_throughput.py --variant atto --height 128 --width 32 --batch 8 --steps 10 --reps 3
      stand-alone: warm-up, reps, prints one JSON line with the seconds of each rep and the peak RSS;
  python3 train_throughput.py ... --serve
      driven by train_throughput.ts: prints {"ready":…}, then per stdin line "rep" runs one rep of
      --steps steps and answers {"seconds":…}; "done" answers {"maxRssKb":…} and exits.
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
    p.add_argument('--in-chans', type=int, default=3)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=10, help='training steps per rep')
    p.add_argument('--reps', type=int, default=3, help='timed reps (stand-alone mode)')
    p.add_argument('--warmup', type=int, default=1, help='untimed reps first (stand-alone mode)')
    p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: leave the default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--precision', default='32', choices=['32', 'bf16-mixed', '16-mixed'])
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--optimizer', default='default', choices=['default', 'foreach', 'fused', 'loop'])
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--weight-decay', type=float, default=1e-5)
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--serve', action='store_true', help='take "rep"/"done" commands on stdin (used by the .ts)')
    return p.parse_args(argv)


def max_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class Bench:
    def __init__(self, a):
        import torch
        import torch.nn.functional as F
        import timm

        self.torch, self.F, self.a = torch, F, a
        if a.threads > 0:
            torch.set_num_threads(a.threads)
        torch.manual_seed(a.seed)
        dev = torch.device(a.device)
        if dev.type == 'cuda' and dev.index is None:
            dev = torch.device('cuda', torch.cuda.current_device())
        self.dev = dev
        self.model = timm.create_model(f'convnext_{a.variant}', num_classes=2, in_chans=a.in_chans,
                                       drop_path_rate=0.0).to(dev)
        self.model.train()
        if a.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (decay if p.ndim > 1 and not name.endswith('.bias') else no_decay).append(p)
        groups = [{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': a.weight_decay}]
        kw = {}
        if a.optimizer == 'fused':
            kw['fused'] = True
        elif a.optimizer == 'foreach':
            kw['foreach'] = True
        elif a.optimizer == 'loop':
            kw['foreach'] = False
        self.opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, **kw)
        self.amp_dtype = {'bf16-mixed': torch.bfloat16, '16-mixed': torch.float16}.get(a.precision)
        self.scaler = torch.amp.GradScaler(dev.type) if a.precision == '16-mixed' else None
        n = a.batch * a.steps
        g = torch.Generator().manual_seed(a.seed)
        self.x = torch.rand(n, a.in_chans, a.height, a.width, generator=g)
        self.y = torch.rand(n, 2, generator=g) * 2 - 1
        self.pin = dev.type == 'cuda'
        self.rep_index = 0

    def sync(self):
        if self.dev.type == 'cuda':
            self.torch.cuda.synchronize(self.dev)

    def step(self, xb, yb):
        torch, F = self.torch, self.F
        if self.pin:
            xb, yb = xb.pin_memory(), yb.pin_memory()
        xb = xb.to(self.dev, non_blocking=self.pin)
        yb = yb.to(self.dev, non_blocking=self.pin)
        if self.a.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is not None:
            with torch.autocast(self.dev.type, dtype=self.amp_dtype):
                out = self.model(xb)
        else:
            out = self.model(xb)
        loss = F.mse_loss(out.float(), yb)
        value = loss.item()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return value

    def rep(self):
        """One rep = --steps steps over a fresh permutation of the data set; returns seconds."""
        torch, a = self.torch, self.a
        perm = torch.randperm(self.x.shape[0], generator=torch.Generator().manual_seed(a.seed + self.rep_index))
        self.rep_index += 1
        self.sync()
        t0 = time.perf_counter()
        for s in range(a.steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            self.step(self.x.index_select(0, idx), self.y.index_select(0, idx))
        self.sync()
        return time.perf_counter() - t0


def main(argv=None):
    a = parse_args(argv)
    rss_start = max_rss_kb()
    b = Bench(a)
    torch = b.torch
    info = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'device': str(b.dev),
            'optimizer': a.optimizer, 'rssInterpreterKb': rss_start, 'rssReadyKb': max_rss_kb()}
    if b.dev.type == 'cuda':
        info['deviceName'] = torch.cuda.get_device_name(b.dev)
    if a.serve:
        print(json.dumps({'ready': True, **info}), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == 'rep':
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                secs = b.rep()
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
                print(json.dumps({'seconds': secs, 'minorFaults': faults}), flush=True)
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
    secs = [b.rep() for _ in range(a.reps)]
    med = sorted(secs)[len(secs) // 2]
    print(json.dumps({**info, 'variant': a.variant, 'shape': [a.in_chans, a.height, a.width], 'batch': a.batch,
                      'steps': a.steps, 'seconds': secs, 'imagesPerSec': a.batch * a.steps / med,
                      'maxRssKb': max_rss_kb()}))


if __name__ == '__main__':
    main()
