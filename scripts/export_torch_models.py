"""Export PyTorch models to ONNX as shared test fixtures, each with an input
and PyTorch's output for it.

    python3 scripts/export_torch_models.py [--out testdata/models] [NAME...]

For each model NAME (all of MODELS by default) it writes, under --out:

    NAME.onnx      the model, exported by torch.onnx.export at opset 17, its
                   input named "input" and its output "output"
    NAME.io.ant    two named f32 tensors in the node's ANT1 tensors format
                   (mnist/tensors.go): "input", drawn from a seeded generator,
                   and "output", what PyTorch computed for it in float32
    NAME.json      how it was made: versions of torch and torchvision, the
                   seeds, the shapes, and the file's sha256

The weights are random from torch.manual_seed(seed), not trained: the
fixtures test that the node computes the network as PyTorch does, not what
the network recognises. BatchNorm layers get random statistics too, and
models are built in eval mode, so the exporter folds each BatchNorm into the
convolution before it (the graph holds no BatchNormalization node).

A model is an entry of MODELS: a function that builds the torch module, and
its input shape. ResNet, a BERT-style encoder or a small ViT join the same
way.
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import torch
import torchvision

OPSET = 17


def random_batchnorm(model):
    """Give every BatchNorm random statistics and affine parameters.

    A fresh BatchNorm is the identity (mean 0, variance 1, weight 1, bias 0),
    so folded into its convolution it would only scale the weights by
    1/sqrt(1 + eps) and add zero biases, which the exporter then shares
    between convolutions. Random ones make every folded bias real.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def mobilenet_v2():
    # Half width keeps the file under 10 MB (full width is about 14 MB);
    # every kind of layer is the same.
    return random_batchnorm(torchvision.models.mobilenet_v2(weights=None, width_mult=0.5))


# name -> (builder, input shape, weight seed, input seed)
MODELS = {
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224), 20261205, 1),
}


def write_ant(path, tensors):
    """Write (name, tensor) pairs as an ANT1 tensors file."""
    with open(path, "wb") as f:
        f.write(b"ANT1")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors:
            t = t.detach().contiguous().to(torch.float32)
            b = name.encode()
            f.write(struct.pack("<H", len(b)))
            f.write(b)
            f.write(struct.pack("<B", t.dim()))
            f.write(struct.pack("<%dI" % t.dim(), *t.shape))
            f.write(struct.pack("<%df" % t.numel(), *t.flatten().tolist()))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def export(name, out):
    build, shape, weight_seed, input_seed = MODELS[name]
    torch.manual_seed(weight_seed)
    model = build().eval()
    gen = torch.Generator().manual_seed(input_seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float32)
    with torch.no_grad():
        y = model(x)
    onnx_path = os.path.join(out, name + ".onnx")
    torch.onnx.export(model, (x,), onnx_path, opset_version=OPSET,
                      input_names=["input"], output_names=["output"],
                      do_constant_folding=True)
    write_ant(os.path.join(out, name + ".io.ant"), [("input", x), ("output", y)])
    meta = {
        "model": name,
        "builder": build.__name__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opset": OPSET,
        "weight_seed": weight_seed,
        "input_seed": input_seed,
        "input": {"name": "input", "shape": list(x.shape), "dtype": "float32",
                  "draw": "torch.randn with torch.Generator().manual_seed(input_seed)"},
        "output": {"name": "output", "shape": list(y.shape), "dtype": "float32"},
        "onnx_sha256": sha256(onnx_path),
        "onnx_bytes": os.path.getsize(onnx_path),
    }
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print("%s: %s, %d bytes, output %s" % (name, onnx_path, meta["onnx_bytes"], list(y.shape)), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "models"))
    ap.add_argument("names", nargs="*", help="models to export (default all: %s)" % ", ".join(MODELS))
    args = ap.parse_args()
    names = args.names or list(MODELS)
    for n in names:
        if n not in MODELS:
            ap.error("unknown model %r (have %s)" % (n, ", ".join(MODELS)))
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for n in names:
        export(n, args.out)


if __name__ == "__main__":
    main()
