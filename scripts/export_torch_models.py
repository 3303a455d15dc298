"""Export PyTorch models to ONNX as shared test fixtures, each with an input
and PyTorch's output for it.

    python3 scripts/export_torch_models.py [--out testdata/models] [NAME...]

For each model NAME (all of MODELS by default) it writes, under --out:

    NAME.onnx      the model, exported by torch.onnx.export at opset 17, its
                   input named "input" and its output "output", their first
                   axis a symbolic "batch"
    NAME.onnx.data for a model saved with external data: its weights, which
                   NAME.onnx refers to by this file name, as torch's newer
                   exporter writes every model
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

A model is an entry of MODELS: a function that builds the torch module, its
input shape, its seeds and whether its weights go to external data. A
BERT-style encoder or a small ViT join the same way.
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


class ResNet18Quarter(torch.nn.Module):
    """ResNet-18's topology (torchvision's BasicBlock, two per stage, the
    7x7 stem and its max pooling) at a quarter of its widths, 16 to 128
    channels, which keeps the file at about 3 MB (full width is 45 MB)."""

    def __init__(self, widths=(16, 32, 64, 128), num_classes=1000):
        from torchvision.models.resnet import BasicBlock, conv1x1
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        blocks, inplanes = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != w:
                down = nn.Sequential(conv1x1(inplanes, w, stride), nn.BatchNorm2d(w))
            blocks += [BasicBlock(inplanes, w, stride, down), BasicBlock(w, w)]
            inplanes = w
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


def resnet18_quarter():
    return random_batchnorm(ResNet18Quarter())


# name -> (builder, input shape, weight seed, input seed, external data)
MODELS = {
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224), 20261205, 1, False),
    # Saved as torch's newer exporter saves every model: the weights in
    # resnet18_quarter.onnx.data beside it.
    "resnet18_quarter": (resnet18_quarter, (1, 3, 224, 224), 20261206, 2, True),
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
    build, shape, weight_seed, input_seed, external = MODELS[name]
    torch.manual_seed(weight_seed)
    model = build().eval()
    gen = torch.Generator().manual_seed(input_seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float32)
    with torch.no_grad():
        y = model(x)
    onnx_path = os.path.join(out, name + ".onnx")
    # The batch is symbolic, so that the same file serves any batch size.
    torch.onnx.export(model, (x,), onnx_path, opset_version=OPSET,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      do_constant_folding=True)
    data_name = None
    if external:
        import onnx
        data_name = name + ".onnx.data"
        om = onnx.load(onnx_path)
        # onnx appends to a data file that exists: start it afresh.
        if os.path.exists(os.path.join(out, data_name)):
            os.remove(os.path.join(out, data_name))
        # Every tensor of 1 KiB or more goes to the one data file, at
        # offsets the library aligns; smaller ones stay in the model.
        onnx.save_model(om, onnx_path, save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name,
                        size_threshold=1024)
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
    if data_name:
        data_path = os.path.join(out, data_name)
        meta["external_data"] = {"file": data_name, "sha256": sha256(data_path),
                                 "bytes": os.path.getsize(data_path)}
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
