#!/usr/bin/env python3
"""A client of the Open Inference Protocol (KServe v2) over HTTP/REST,
written from the specification with Python's standard library alone.

It does what an HTTP client of the protocol does: health, server and model
metadata, readiness, and inference with JSON tensors and with the binary
tensor data extension; and it checks every answer against a case file.

    python3 oip_client.py URL CASE.json

URL is the server's base URL (http://127.0.0.1:8000). CASE.json names a
model and holds what to send and what to expect:

    {
      "model": "cnn",
      "version": "<the version metadata reports>",
      "metadata": {"inputs": [$metadata_tensor, ...], "outputs": [...]},
      "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 28, 28],
                  "data": [0.5, ...]}],
      "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 10],
                   "bits": [1065353216, ...]}]
    }

Inputs are FP32 or INT32, flat. Each expected output gives its elements as
the unsigned 32-bit patterns of its FP32 values, so that results are
compared bit for bit (any NaN matches any NaN).

It prints "ok: <check>" for each check that passes and "PASS: <n> checks"
at the end, and exits 0; at the first check that fails it prints
"FAIL: <check>: <why>" to stderr and exits 1.
"""

import json
import math
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request

HEADER_LENGTH = "Inference-Header-Content-Length"
FORMATS = {"FP32": "f", "INT32": "i"}


class CheckFailed(Exception):
    pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        """The JSON object of the body: the whole body, or its first
        Inference-Header-Content-Length bytes."""
        n = self.headers.get(HEADER_LENGTH)
        head = self.body if n is None else self.body[: int(n)]
        return json.loads(head.decode("utf-8"))

    def binary(self):
        """The binary data after the JSON object, or b""."""
        n = self.headers.get(HEADER_LENGTH)
        return b"" if n is None else self.body[int(n):]


class Client:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path):
        return self.request("GET", path)

    def model_path(self, model, version=None):
        path = "/v2/models/" + urllib.parse.quote(model, safe="")
        if version:
            path += "/versions/" + urllib.parse.quote(version, safe="")
        return path

    def infer_json(self, model, request, version=None):
        """POST an inference request with JSON tensors."""
        body = json.dumps(request).encode("utf-8")
        return self.request("POST", self.model_path(model, version) + "/infer", body,
                            {"Content-Type": "application/json"})

    def infer_binary(self, model, request, blobs, version=None):
        """POST an inference request whose JSON object is followed by the
        inputs' binary data (the binary tensor data extension)."""
        head = json.dumps(request).encode("utf-8")
        body = head + b"".join(blobs)
        return self.request("POST", self.model_path(model, version) + "/infer", body, {
            "Content-Type": "application/octet-stream",
            HEADER_LENGTH: str(len(head)),
        })


def pack(datatype, data):
    return struct.pack("<%d%s" % (len(data), FORMATS[datatype]), *data)


def fp32_bits(v):
    """The bit pattern of a JSON FP32 element: a number, or one of the
    strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(v, str):
        v = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[v]
    return struct.unpack("<I", struct.pack("<f", v))[0]


def is_nan_bits(b):
    return (b & 0x7F800000) == 0x7F800000 and (b & 0x007FFFFF) != 0


def same_bits(got, want):
    return len(got) == len(want) and all(g == w or (is_nan_bits(g) and is_nan_bits(w)) for g, w in zip(got, want))


class Checker:
    def __init__(self, client, case):
        self.c = client
        self.case = case
        self.count = 0

    def ok(self, what):
        self.count += 1
        print("ok: " + what, flush=True)

    def expect(self, cond, what, why):
        if not cond:
            raise CheckFailed("%s: %s" % (what, why))

    def expect_status(self, r, status, what):
        self.expect(r.status == status, what, "status %d, want %d: %r" % (r.status, status, r.body[:300]))

    def expect_error(self, r, status, what):
        self.expect_status(r, status, what)
        try:
            err = r.json()["error"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckFailed("%s: not an error object (%s): %r" % (what, e, r.body[:300]))
        self.expect(isinstance(err, str) and err, what, "empty error")
        self.ok("%s (%d: %s)" % (what, status, err[:80]))

    def outputs(self, r, what):
        """Checks an inference response and returns each output's bits by
        name, reading JSON data and binary data alike."""
        self.expect_status(r, 200, what)
        resp = r.json()
        self.expect(resp.get("model_name") == self.case["model"], what, "model_name %r" % resp.get("model_name"))
        blob = r.binary()
        got = {}
        for o in resp["outputs"]:
            params = o.get("parameters") or {}
            if "binary_data_size" in params:
                n = params["binary_data_size"]
                self.expect("data" not in o and n <= len(blob), what, "output %s: binary_data_size %d, %d bytes left" % (o["name"], n, len(blob)))
                chunk, blob = blob[:n], blob[n:]
                got[o["name"]] = list(struct.unpack("<%dI" % (n // 4), chunk))
            else:
                got[o["name"]] = [fp32_bits(v) for v in flatten(o["data"])]
            want = self.expected(o["name"])
            self.expect(o["datatype"] == want["datatype"] and o["shape"] == want["shape"], what,
                        "output %s is %s%s, want %s%s" % (o["name"], o["datatype"], o["shape"], want["datatype"], want["shape"]))
        self.expect(blob == b"", what, "%d bytes of binary data no output claims" % len(blob))
        return resp, got

    def expected(self, name):
        for o in self.case["outputs"]:
            if o["name"] == name:
                return o
        raise CheckFailed("the server returned output %r, which the case does not expect" % name)

    def compare(self, got, names, what):
        self.expect(list(got) == names, what, "outputs %s, want %s" % (list(got), names))
        for name in names:
            self.expect(same_bits(got[name], self.expected(name)["bits"]), what, "output %s differs:\n got %s\nwant %s" % (
                name, got[name][:12], self.expected(name)["bits"][:12]))
        self.ok(what)

    def run(self):
        case, c = self.case, self.c
        model, version = case["model"], case["version"]
        names = [o["name"] for o in case["outputs"]]

        # Health: the status code is the answer.
        for path in ("/v2/health/live", "/v2/health/ready", c.model_path(model) + "/ready", c.model_path(model, version) + "/ready"):
            r = c.get(path)
            self.expect_status(r, 200, "GET " + path)
            self.ok("GET %s (200)" % path)

        # Server metadata.
        meta = c.get("/v2")
        self.expect_status(meta, 200, "server metadata")
        m = meta.json()
        self.expect(isinstance(m.get("name"), str) and isinstance(m.get("version"), str), "server metadata", m)
        self.expect("binary_tensor_data" in m.get("extensions", []), "server metadata", "extensions %s lack binary_tensor_data" % m.get("extensions"))
        self.ok("server metadata: %s %s, extensions %s" % (m["name"], m["version"], ", ".join(m["extensions"])))

        # Model metadata, by name and by version.
        for v in (None, version):
            what = "model metadata" + (" at its version" if v else "")
            r = c.get(c.model_path(model, v))
            self.expect_status(r, 200, what)
            m = r.json()
            self.expect(m["name"] == model and version in m.get("versions", []) and isinstance(m["platform"], str), what, m)
            for key in ("inputs", "outputs"):
                self.expect(m[key] == case["metadata"][key], what, "%s %s, want %s" % (key, m[key], case["metadata"][key]))
            self.ok("%s: platform %s, inputs %s" % (what, m["platform"], ", ".join("%s %s%s" % (t["name"], t["datatype"], t["shape"]) for t in m["inputs"])))

        inputs = case["inputs"]
        json_inputs = [{"name": i["name"], "shape": i["shape"], "datatype": i["datatype"], "data": i["data"]} for i in inputs]

        # Inference with JSON tensors; the id comes back.
        resp, got = self.outputs(c.infer_json(model, {"id": "py-1", "inputs": json_inputs}), "infer, JSON")
        self.expect(resp.get("id") == "py-1", "infer, JSON", "id %r, want py-1" % resp.get("id"))
        self.compare(got, names, "infer, JSON tensors, id echoed")

        # One output asked for, at the model's version.
        last = names[-1]
        _, got = self.outputs(c.infer_json(model, {"inputs": json_inputs, "outputs": [{"name": last}]}, version), "infer, one output")
        self.compare(got, [last], "infer at the version, output %s alone" % last)

        # The binary tensor data extension: inputs and outputs as binary data.
        bin_inputs = [{"name": i["name"], "shape": i["shape"], "datatype": i["datatype"],
                       "parameters": {"binary_data_size": 4 * len(i["data"])}} for i in inputs]
        blobs = [pack(i["datatype"], i["data"]) for i in inputs]
        r = c.infer_binary(model, {"inputs": bin_inputs, "parameters": {"binary_data_output": True}}, blobs)
        self.expect(r.headers.get(HEADER_LENGTH) is not None, "infer, binary", "no %s in the response" % HEADER_LENGTH)
        _, got = self.outputs(r, "infer, binary")
        self.compare(got, names, "infer, binary inputs and outputs")

        # Binary inputs, JSON outputs.
        _, got = self.outputs(c.infer_binary(model, {"inputs": bin_inputs}, blobs), "infer, binary in")
        self.compare(got, names, "infer, binary inputs, JSON outputs")

        # JSON inputs, the first output binary and the rest JSON.
        outs = [{"name": n, "parameters": {"binary_data": i == 0}} for i, n in enumerate(names)]
        _, got = self.outputs(c.infer_json(model, {"inputs": json_inputs, "outputs": outs}), "infer, mixed")
        self.compare(got, names, "infer, JSON inputs, output %s binary" % names[0])

        # Errors: {"error": ...} with a 4xx status.
        self.expect_error(c.get(c.model_path(model + "-nonexistent")), 404, "unknown model")
        self.expect_error(c.infer_json(model + "-nonexistent", {"inputs": json_inputs}), 404, "infer on an unknown model")
        bad = [dict(i, data=i["data"][:-1]) for i in json_inputs]
        self.expect_error(c.infer_json(model, {"inputs": bad}), 400, "data shorter than its shape")
        r = c.request("POST", c.model_path(model) + "/infer", b'{"inputs": [', {"Content-Type": "application/json"})
        self.expect_error(r, 400, "malformed JSON")
        short = c.infer_binary(model, {"inputs": bin_inputs}, [b[:-4] for b in blobs])
        self.expect_error(short, 400, "binary data shorter than binary_data_size")


def flatten(v):
    if isinstance(v, list):
        out = []
        for e in v:
            out.extend(flatten(e))
        return out
    return [v]


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: oip_client.py URL CASE.json", file=sys.stderr)
        return 2
    with open(argv[2]) as f:
        case = json.load(f)
    checker = Checker(Client(argv[1]), case)
    try:
        checker.run()
    except CheckFailed as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    print("PASS: %d checks" % checker.count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
