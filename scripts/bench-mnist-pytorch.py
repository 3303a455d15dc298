#!/usr/bin/env python3
"""Benchmark PyTorch training and inference of accelnode's MNIST CNN.

Reference figures to set beside the node's own on the same cores; not part
of `make test`. Run it through scripts/bench-mnist-pytorch.sh, which installs
PyTorch first where it is missing.

The network, NCHW f32, input pixels u8/255 with no normalisation:
  conv 1->16 5x5 pad 2 + bias, relu, maxpool 2x2/2   -> [B,16,14,14]
  conv 16->32 5x5 pad 2 + bias, relu, maxpool 2x2/2  -> [B,32,7,7]
  flatten (C,H,W) 1568, dense 1568->128 + bias, relu, dense 128->10 + bias
  softmax cross-entropy, mean over the batch; SGD momentum 0.9, no decay.

Training images/s is the wall time of the training loop after one warm-up
batch (the first batch of the first epoch, trained but not timed); the data
is decoded, converted and shuffled before each epoch's clock starts.
Inference images/s is one pass over the 10,000 test digits under
torch.inference_mode after a warm-up pass over them. On cuda the device is
synchronised before each clock reading. Each figure comes with the process's
CPU time over its wall time: with fewer cores busy than --threads, other work
shared the cores and the figure is low.
"""

import argparse
import gzip
import json
import os
import platform
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 1
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def all_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(REPO, ".deps", "mnist"),
                   help="directory with the four MNIST IDX .gz files "
                        "(default: .deps/mnist in the repository)")
    p.add_argument("--threads", type=int, default=all_cores(),
                   help="torch.set_num_threads (default: all cores, %(default)s here)")
    p.add_argument("--train-images", type=int, default=60000,
                   help="train on the first N training images (default 60000)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--batch", type=int, default=64, help="training batch (default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--infer-batch", type=int, default=256,
                   help="inference batch (default 256)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    a = p.parse_args()
    for name in ("threads", "train_images", "epochs", "batch", "infer_batch"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    if a.train_images > 60000:
        p.error("--train-images must be at most 60000")
    return a


def read_idx(path, magic, ndim):
    """Reads one gzipped IDX file of u8 data: returns a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got, = struct.unpack(">I", raw[:4])
    if got != magic:
        raise ValueError("%s: magic %#x, want %#x" % (path, got, magic))
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data for dims %s" % (path, data.size, dims))
    return data.reshape(dims)


def load(data_dir):
    missing = [n for n in FILES.values() if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        sys.exit("bench-mnist-pytorch: %s lacks %s" % (data_dir, ", ".join(missing)))
    path = lambda key: os.path.join(data_dir, FILES[key])
    return (read_idx(path("train_images"), 0x803, 3), read_idx(path("train_labels"), 0x801, 1),
            read_idx(path("test_images"), 0x803, 3), read_idx(path("test_labels"), 0x801, 1))


def to_tensors(images, labels, device):
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # [N,1,28,28]
    y = torch.from_numpy(labels.astype(np.int64))
    return x.to(device), y.to(device)


def net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=1, padding=2, bias=True), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 32, 5, stride=1, padding=2, bias=True), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),  # C,H,W order: 32*7*7 = 1568
        nn.Linear(1568, 128, bias=True), nn.ReLU(),
        nn.Linear(128, 10, bias=True),
    )


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_library():
    """Names the BLAS that this process loaded, from /proc/self/maps."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none loaded"


def malloc_settings():
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")
    return " ".join("%s=%s" % (k, os.environ[k]) for k in keys if k in os.environ) or "glibc defaults"


def main():
    a = parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench-mnist-pytorch: --device cuda, but this PyTorch sees no CUDA device "
              "(built with CUDA: %s)" % (torch.version.cuda or "no"), file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(a.threads)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    tr_img, tr_lab, te_img, te_lab = load(a.data)
    x_all, y_all = to_tensors(tr_img[:a.train_images], tr_lab[:a.train_images], dev)
    x_test, y_test = to_tensors(te_img, te_lab, dev)
    n = x_all.shape[0]

    model = net().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEED)

    # Training: shuffle before the clock; the first batch of epoch 1 warms up.
    model.train()
    train_s = 0.0
    train_cpu_s = 0.0
    train_faults = 0
    timed_images = 0
    last_loss = float("nan")
    for epoch in range(a.epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        x, y = x_all[perm], y_all[perm]
        start = 0
        loss_sum = torch.zeros((), device=dev)
        if epoch == 0:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[:a.batch]), y[:a.batch])
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * x[:a.batch].shape[0]
            start = a.batch
        sync()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for i in range(start, n, a.batch):
            xb, yb = x[i:i + a.batch], y[i:i + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * xb.shape[0]
        sync()
        train_s += time.perf_counter() - t0
        train_cpu_s += time.process_time() - cpu0
        train_faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        timed_images += n - start
        last_loss = loss_sum.item() / n

    # Inference: a warm-up pass over the test set, then the timed pass.
    model.eval()

    def infer_pass():
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        for i in range(0, x_test.shape[0], a.infer_batch):
            pred = model(x_test[i:i + a.infer_batch]).argmax(dim=1)
            correct += (pred == y_test[i:i + a.infer_batch]).sum()
        return correct

    with torch.inference_mode():
        infer_pass()
        sync()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        correct = infer_pass()
        sync()
        infer_s = time.perf_counter() - t0
        infer_cpu_s = time.process_time() - cpu0
    n_test = x_test.shape[0]
    accuracy = correct.item() / n_test

    out = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": a.device,
        "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else None,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": all_cores(),
        "blas": blas_library(),
        "malloc": malloc_settings(),
        "seed": SEED,
        "train_images": n,
        "epochs": a.epochs,
        "batch": a.batch,
        "lr": a.lr,
        "train_timed_images": timed_images,
        "train_seconds": round(train_s, 4),
        "train_images_per_s": round(timed_images / train_s, 1),
        "train_cpu_seconds": round(train_cpu_s, 4),
        "train_page_faults": train_faults,
        "train_loss_last_epoch": round(last_loss, 5),
        "test_images": n_test,
        "test_accuracy": round(accuracy, 4),
        "infer_batch": a.infer_batch,
        "infer_seconds": round(infer_s, 4),
        "infer_images_per_s": round(n_test / infer_s, 1),
        "infer_cpu_seconds": round(infer_cpu_s, 4),
    }
    if "libblas.so" in out["blas"] and "/blas/" in out["blas"]:
        print("bench-mnist-pytorch: warning: PyTorch runs on the reference BLAS (%s); "
              "install libopenblas0-pthread for a fair figure" % out["blas"], file=sys.stderr)
    if a.json:
        print(json.dumps(out))
        return
    print("torch %s (numpy %s, python %s)" % (out["torch"], out["numpy"], out["python"]))
    print("device %s%s, threads %d, cpu %s (%d cores)" % (
        a.device, " (%s)" % out["gpu"] if out["gpu"] else "", out["threads"], out["cpu"], out["cores"]))
    print("blas %s; malloc %s" % (out["blas"], out["malloc"]))
    print("training:  %d images x %d epoch(s), batch %d, lr %g: %d timed images in %.3f s = "
          "%.1f images/s; mean loss of the last epoch %.4f" % (
              n, a.epochs, a.batch, a.lr, timed_images, train_s, out["train_images_per_s"], last_loss))
    print("           process cpu %.3f s over %.3f s wall (%.2f cores busy), %d minor page faults" % (
        train_cpu_s, train_s, train_cpu_s / train_s, train_faults))
    print("accuracy:  %d/%d test digits = %.2f%%" % (correct.item(), n_test, 100 * accuracy))
    print("inference: %d images, batch %d, in %.3f s = %.1f images/s" % (
        n_test, a.infer_batch, infer_s, out["infer_images_per_s"]))
    print("           process cpu %.3f s over %.3f s wall (%.2f cores busy)" % (
        infer_cpu_s, infer_s, infer_cpu_s / infer_s))


if __name__ == "__main__":
    main()
