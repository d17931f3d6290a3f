"""Independent references for the ONNX exporter tests (run with the project's .venv python).

  reference.py make  --variant convnext_atto --head localization|classification|regression --outputs N
                     --in-chans C --height H --width W --batches 1,3,8 --weights W.safetensors --inputs X.safetensors
      Builds the network in PyTorch (timm's ConvNeXt + our localization head written here again), gives it random,
      non-trivial weights (layer scale γ ≈ 0.5, norms and BatchNorm statistics away from identity), saves the
      state dict (timm names) and random input batches, one tensor per batch size ("batch_<n>").

  reference.py check --onnx M.onnx --weights W.safetensors --inputs X.safetensors [--libtorch Y.safetensors] ...
      onnx.checker (full_check) on the file, then ONNX Runtime on every input batch, compared with the PyTorch
      reference built from the same weights and, if given, with libtorch's outputs. Prints one JSON report.
"""
import argparse
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def localization_mlp(features, hidden=(128, 64), dropout=(0.3, 0.2)):
    layers, width = [], features
    for h, p in zip(hidden, dropout):
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(p)]
        width = h
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


class Reference(nn.Module):
    """timm's ConvNeXt with the heads of native/model/network.cc, in eval mode."""

    def __init__(self, variant, head, outputs, in_chans, sigma=(0.01, 1.0)):
        super().__init__()
        import timm

        self.head_kind = head
        self.sigma = sigma
        if head == 'localization':
            self.backbone = timm.create_model(variant, pretrained=False, num_classes=0, in_chans=in_chans)
            features = self.backbone.num_features
            self.position_head = localization_mlp(features)
            self.uncertainty_head = localization_mlp(features)
        else:
            self.backbone = timm.create_model(variant, pretrained=False, num_classes=outputs, in_chans=in_chans)

    def state_dict_timm(self):
        sd = {}
        for k, v in self.state_dict().items():
            sd[k[len('backbone.'):] if k.startswith('backbone.') else k] = v
        return sd

    def load_timm(self, sd):
        fixed = {}
        for k, v in sd.items():
            fixed[k if k.startswith(('position_head.', 'uncertainty_head.')) else 'backbone.' + k] = v
        missing, unexpected = self.load_state_dict(fixed, strict=False)
        missing = [k for k in missing if not k.endswith('num_batches_tracked')]
        if missing or unexpected:
            raise SystemExit(f'reference: missing {missing[:5]} unexpected {unexpected[:5]}')

    def forward(self, x):
        f = self.backbone(x)
        if self.head_kind == 'localization':
            return {'positions': self.position_head(f),
                    'uncertainties': F.softplus(self.uncertainty_head(f)).clamp(*self.sigma)}
        return {'logits' if self.head_kind == 'classification' else 'outputs': f}


def randomize(model, gen):
    """Random weights far from identity: a test of near-identity blocks proves little."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('gamma'):
                p.copy_(0.3 + 0.4 * torch.rand(p.shape, generator=gen))
            elif p.dim() == 1 and name.endswith('weight'):  # norm scales
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(fan_in))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.2 * torch.randn(b.shape, generator=gen))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


def cmd_make(a):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)
    model = Reference(a.variant, a.head, a.outputs, a.in_chans).eval()
    randomize(model, gen)
    sd = {k: v.contiguous() for k, v in model.state_dict_timm().items()}
    meta = {'heimdall.variant': a.variant, 'heimdall.head': a.head, 'heimdall.in_chans': str(a.in_chans),
            'heimdall.outputs': str(a.outputs), 'format': 'pt'}
    save_file(sd, a.weights, metadata=meta)
    inputs = {}
    for n in [int(b) for b in a.batches.split(',')]:
        inputs[f'batch_{n}'] = torch.randn(n, a.in_chans, a.height, a.width, generator=gen)
    save_file(inputs, a.inputs)
    print(json.dumps({'weights': a.weights, 'inputs': a.inputs, 'tensors': len(sd),
                      'parameters': int(sum(v.numel() for v in sd.values()))}))


def diff(a, b):
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {'max': float(d.max()), 'mean': float(d.mean())}


def cmd_check(a):
    import onnx
    import onnxruntime as ort
    from safetensors.torch import load_file

    report = {}
    # 1. the ONNX project's own checker, full check (shape inference included); by path so external data works
    onnx.checker.check_model(a.onnx, full_check=True)
    m = onnx.load(a.onnx, load_external_data=False)
    report['checker'] = 'ok'
    report['ir_version'] = m.ir_version
    report['opsets'] = {o.domain or 'ai.onnx': o.version for o in m.opset_import}
    report['metadata'] = {p.key: p.value for p in m.metadata_props}
    report['inputs'] = [{'name': i.name, 'shape': [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}
                        for i in m.graph.input]
    report['outputs'] = [{'name': o.name, 'shape': [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]}
                         for o in m.graph.output]
    report['op_types'] = sorted({n.op_type for n in m.graph.node})
    report['external_initializers'] = sum(1 for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)

    # 2. ONNX Runtime vs the PyTorch reference (timm) vs libtorch
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(a.onnx, opts, providers=['CPUExecutionProvider'])
    input_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    model = Reference(a.variant, a.head, a.outputs, a.in_chans).eval()
    model.load_timm(load_file(a.weights))
    inputs = load_file(a.inputs)
    libtorch = load_file(a.libtorch) if a.libtorch else None
    report['batches'] = []
    with torch.no_grad():
        for key, x in inputs.items():
            got = dict(zip(out_names, sess.run(None, {input_name: x.numpy()})))
            ref = {k: v.numpy() for k, v in model(x).items()}
            entry = {'input': key, 'shape': list(x.shape), 'outputs': {}}
            for name in out_names:
                e = {'shape': list(got[name].shape), 'ort_vs_torch': diff(got[name], ref[name]),
                     'ref_absmax': float(np.abs(ref[name]).max()), 'ref_std': float(ref[name].std())}
                if libtorch is not None:
                    lt = libtorch[f'{key}/{name}'].numpy()
                    e['ort_vs_libtorch'] = diff(got[name], lt)
                    e['libtorch_vs_torch'] = diff(lt, ref[name])
                entry['outputs'][name] = e
            report['batches'].append(entry)
    print(json.dumps(report))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='cmd', required=True)
    for name in ('make', 'check'):
        s = sub.add_parser(name)
        s.add_argument('--variant', default='convnext_atto')
        s.add_argument('--head', default='localization')
        s.add_argument('--outputs', type=int, default=2)
        s.add_argument('--in-chans', type=int, default=3)
        s.add_argument('--weights', required=True)
        s.add_argument('--inputs', required=True)
        if name == 'make':
            s.add_argument('--height', type=int, default=128)
            s.add_argument('--width', type=int, default=32)
            s.add_argument('--batches', default='1,3,8')
            s.add_argument('--seed', type=int, default=0)
        else:
            s.add_argument('--onnx', required=True)
            s.add_argument('--libtorch')
    a = p.parse_args()
    torch.set_num_threads(2)
    {'make': cmd_make, 'check': cmd_check}[a.cmd](a)


if __name__ == '__main__':
    sys.exit(main())
