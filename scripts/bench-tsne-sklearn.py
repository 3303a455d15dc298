#!/usr/bin/env python3
"""Embed MNIST digits with scikit-learn's PCA and Barnes-Hut t-SNE.

The reference that the node's t-SNE of the digits is set beside, on the same
cores; not part of `make test`. Run it through scripts/bench-tsne-sklearn.sh,
which installs scikit-learn first where it is missing.

The points: the first N of the 70,000 digits, the 60,000 training digits
followed by the 10,000 test digits, each 784 pixels u8/255 in float32. The
pipeline:

  PCA(n_components=50, svd_solver=randomized|full, random_state=0)
  TSNE(n_components=2, perplexity=30, angle=0.5, init='pca',
       learning_rate='auto', max_iter=1000 (n_iter before scikit-learn 1.5),
       method='barnes_hut', random_state=0, n_jobs=cores)

pca_s and tsne_s are the wall times of the two fit_transform calls, total_s
the wall time of both; the process's CPU time over them says how many cores
it had. (scikit-learn's n_jobs runs the neighbour search;
its gradient runs on OpenMP threads, all cores unless OMP_NUM_THREADS says
otherwise.) Then, untimed:

  kl       TSNE's kl_divergence_, the KL divergence after the last iteration;
  trust10  sklearn.manifold.trustworthiness(PCA-50 data, embedding,
           n_neighbors=10), with Euclidean distances. It holds n x n
           matrices (about 2 GB at n = 10,000), so above 20,000 points
           (--trust auto) it is computed a block of rows at a time by the
           same formula, with the same input distances and the same
           embedding neighbours: T = 1 - 2/(n k (2n - 3k - 1)) * sum over i
           and each of i's k embedding neighbours j of max(0, r(i, j) - k),
           r(i, j) the rank of j among i's input-space neighbours;
  knn10    10-NN leave-one-out accuracy in the embedding: each point's 10
           nearest other points (squared Euclidean distance from the float32
           coordinates in float64, ties to the lower index; the point itself
           is left out by its index, so a duplicate of it counts as a
           neighbour) vote with their labels, a tie going to the smallest
           label, and the vote is compared with the point's own label.
"""

import argparse
import gzip
import inspect
import os
import platform
import struct
import sys
import time

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

SEED = 0
K = 10  # neighbours for trust10 and knn10
TRUST_SKLEARN_MAX = 20000  # --trust auto: sklearn's n x n matrices up to here
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
    p.add_argument("-n", type=int, default=10000,
                   help="embed the first N of the training digits followed by the test "
                        "digits, 100 to 70000 (default 10000)")
    p.add_argument("--pca-solver", choices=("randomized", "full"), default="randomized",
                   help="PCA's svd_solver (default randomized)")
    p.add_argument("--jobs", type=int, default=all_cores(),
                   help="TSNE's n_jobs (default: all cores, %(default)s here)")
    p.add_argument("--out", default="",
                   help="also write the embedding to this CSV file (x,y,label), "
                        "for `accelnode plot`")
    p.add_argument("--trust", choices=("auto", "sklearn", "chunked"), default="auto",
                   help="how trust10 is computed: sklearn.manifold.trustworthiness, "
                        "or the same by blocks of rows; auto takes sklearn up to %d "
                        "points (default auto)" % TRUST_SKLEARN_MAX)
    a = p.parse_args()
    if not 100 <= a.n <= 70000:
        p.error("-n must be from 100 to 70000")
    if a.jobs < 1:
        p.error("--jobs must be at least 1")
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


def load(data_dir, n):
    """The first n digits of training then test, as float32 [n,784] and int labels."""
    missing = [f for f in FILES.values() if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        sys.exit("bench-tsne-sklearn: %s lacks %s" % (data_dir, ", ".join(missing)))
    path = lambda key: os.path.join(data_dir, FILES[key])
    images = np.concatenate([read_idx(path("train_images"), 0x803, 3),
                             read_idx(path("test_images"), 0x803, 3)])
    labels = np.concatenate([read_idx(path("train_labels"), 0x801, 1),
                             read_idx(path("test_labels"), 0x801, 1)])
    if len(images) != len(labels):
        sys.exit("bench-tsne-sklearn: %d images but %d labels" % (len(images), len(labels)))
    if n > len(images):
        sys.exit("bench-tsne-sklearn: -n %d, but %s holds %d digits" % (n, data_dir, len(images)))
    x = images[:n].reshape(n, -1).astype(np.float32) / np.float32(255)
    return x, labels[:n].astype(np.int64)


def iterations_parameter():
    """TSNE's iteration count is max_iter from scikit-learn 1.5, n_iter before."""
    params = inspect.signature(TSNE.__init__).parameters
    return "max_iter" if "max_iter" in params else "n_iter"


def trust_chunked(x, y, k, rows=256):
    """trustworthiness(x, y, n_neighbors=k) a block of rows at a time.

    The same ranks as scikit-learn's: input distances from pairwise_distances,
    the point itself left out, embedding neighbours from
    NearestNeighbors.kneighbors(); r(i, j) is 1 + the number of other points
    nearer to i than j (on an exact tie of distances sklearn's argsort puts
    the two either way)."""
    n = len(x)
    emb = NearestNeighbors(n_neighbors=k).fit(y).kneighbors(return_distance=False)
    total = 0
    for a in range(0, n, rows):
        b = min(n, a + rows)
        d = pairwise_distances(x[a:b], x)
        d[np.arange(b - a), np.arange(a, b)] = np.inf
        dj = np.take_along_axis(d, emb[a:b], axis=1)  # [rows, k]
        ranks = 1 + (d[:, None, :] < dj[:, :, None]).sum(axis=2)
        total += int(np.maximum(ranks - k, 0).sum())
    return 1.0 - total * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def knn_accuracy(y, labels, k):
    """10-NN leave-one-out accuracy as the module's doc says."""
    n = len(y)
    q = min(n, k + 6)  # a few beyond k + self, to see ties at the k-th
    cand = NearestNeighbors(n_neighbors=q).fit(y).kneighbors(y, return_distance=False)
    y64 = y.astype(np.float64)
    nbrs = np.empty((n, k), dtype=np.int64)
    exact = 0
    for i in range(n):
        c = cand[i][cand[i] != i]
        d = ((y64[c] - y64[i]) ** 2).sum(axis=1)
        order = np.lexsort((c, d))  # by distance, then index
        # A point the search did not return may be as near as the k-th:
        # where the k-th is as far as the farthest returned, or the search
        # did not return enough, rank every point.
        if len(c) < k + 1 or d[order[k - 1]] >= d.max() * (1 - 1e-6):
            c = np.delete(np.arange(n), i)
            d = ((y64[c] - y64[i]) ** 2).sum(axis=1)
            order = np.lexsort((c, d))
            exact += 1
        nbrs[i] = c[order[:k]]
    votes = np.zeros((n, int(labels.max()) + 1), dtype=np.int64)
    for j in range(k):
        np.add.at(votes, (np.arange(n), labels[nbrs[:, j]]), 1)
    predicted = votes.argmax(axis=1)  # the first maximum: ties to the smallest label
    return float((predicted == labels).mean()), exact


def blas_library():
    """Names the BLAS that this process loaded, from /proc/self/maps."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f
                    if "blas" in line.lower() and "/" in line and ".cpython-" not in line}
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none loaded"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    a = parse_args()
    cores = all_cores()
    iters = iterations_parameter()
    print("sklearn %s, numpy %s, python %s" % (sklearn.__version__, np.__version__,
                                              platform.python_version()))
    print("cpu %s (%d cores); blas %s" % (cpu_model(), cores, blas_library()))
    x, labels = load(a.data, a.n)
    print("data: %d digits (%d training, %d test) from %s; PCA(50, %s) then "
          "TSNE(perplexity 30, angle 0.5, %s 1000, n_jobs %d)" % (
              a.n, min(a.n, 60000), max(0, a.n - 60000), a.data, a.pca_solver, iters, a.jobs),
          flush=True)

    pca = PCA(n_components=50, svd_solver=a.pca_solver, random_state=SEED)
    tsne = TSNE(n_components=2, perplexity=30.0, angle=0.5, init="pca",
                learning_rate="auto", method="barnes_hut", random_state=SEED,
                n_jobs=a.jobs, **{iters: 1000})
    c0, t0 = time.process_time(), time.perf_counter()
    x50 = pca.fit_transform(x)
    t1 = time.perf_counter()
    y = tsne.fit_transform(x50)
    c2, t2 = time.process_time(), time.perf_counter()
    pca_s, tsne_s, total_s = t1 - t0, t2 - t1, t2 - t0
    print("pca: %.3f s, explained variance %.4f; tsne: %.3f s, n_iter_ %d" % (
        pca_s, pca.explained_variance_ratio_.sum(), tsne_s, tsne.n_iter_))
    # Fewer cores busy than there are: other work shared them, and the
    # times are long.
    print("process cpu %.3f s over %.3f s wall (%.2f cores busy of %d)" % (
        c2 - c0, total_s, (c2 - c0) / total_s, cores), flush=True)

    if a.out:
        with open(a.out, "w") as f:
            f.write("x,y,label\n")
            for (px, py), lab in zip(y.astype(np.float64), labels):
                f.write("%.9g,%.9g,%d\n" % (px, py, lab))
        print("wrote %s" % a.out)

    m0 = time.perf_counter()
    how = a.trust
    if how == "auto":
        how = "sklearn" if a.n <= TRUST_SKLEARN_MAX else "chunked"
    if how == "sklearn":
        trust = trustworthiness(x50, y, n_neighbors=K)
    else:
        trust = trust_chunked(x50, y, K)
    knn, exact = knn_accuracy(y, labels, K)
    print("metrics: %.3f s (trust10 by %s; %d points' neighbours ranked over all points)" % (
        time.perf_counter() - m0, how, exact))
    print("sklearn: n=%d cores=%d pca_s=%.3f tsne_s=%.3f total_s=%.3f kl=%.4f "
          "trust10=%.4f knn10=%.4f" % (a.n, cores, pca_s, tsne_s, total_s,
                                       tsne.kl_divergence_, trust, knn))


if __name__ == "__main__":
    main()
