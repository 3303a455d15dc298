// split.js: the browser's side of split learning with the split-dense
// actor (examples/split-dense). The page computes the two convolutional
// layers of the seed's MNIST network itself and sends the node only their
// activations and the labels; the actor trains the dense layers and replies
// with the gradient of the loss with respect to those activations.
//
// A standalone ES module without dependencies. It computes what the Go
// package examples/internal/splitnet computes, and encodes and decodes the
// same bytes; examples/split-dense's tests hold the two together. Every
// number is little-endian; f32 is IEEE 754 binary32.

export const SIDE = 28;
export const PIXELS = SIDE * SIDE; // values of one image, pixels/255
export const CONV1 = 16;
export const CONV2 = 32;
export const KERNEL = 5;
export const PAD = 2;
export const FLAT = CONV2 * (SIDE / 4) * (SIDE / 4); // 1568 activations an image
// The conv weights, in this order: conv1.w [16,1,5,5], conv1.b [16],
// conv2.w [32,16,5,5], conv2.b [32].
export const CONV_LEN = CONV1 * KERNEL * KERNEL + CONV1 + CONV2 * CONV1 * KERNEL * KERNEL + CONV2;
export const MAX_BATCH = 256; // the most images the actor takes in one call

// convFromBytes reads the CONV_LEN f32 conv weights from bytes (an
// ArrayBuffer or a typed array), as a file of them holds them.
export function convFromBytes(bytes) {
  const dv = view(bytes);
  if (dv.byteLength !== 4 * CONV_LEN) {
    throw new Error(`conv weights of ${dv.byteLength} bytes: want ${4 * CONV_LEN}`);
  }
  const w = new Float32Array(CONV_LEN);
  for (let i = 0; i < CONV_LEN; i++) w[i] = dv.getFloat32(4 * i, true);
  return w;
}

// features computes the client's layers for B images (B × PIXELS values,
// pixels/255) with the conv weights conv (CONV_LEN values):
//
//   conv 5×5 (16, padding 2) → relu → max-pool 2×2 → conv 5×5 (32, padding
//   2) → relu → max-pool 2×2
//
// and returns B × FLAT activations, each image's [32, 7, 7] in that order,
// in a Float32Array. Each convolution output is summed in float64 over
// input channel, kernel row and kernel column, in that order, then gets its
// bias and is rounded once to float32: the bits of splitnet.Features.
export function features(conv, pixels, B) {
  if (conv.length !== CONV_LEN || !(B >= 0) || pixels.length !== B * PIXELS) {
    throw new Error(`features of ${conv.length} conv weights and ${pixels.length} pixels for ${B} images`);
  }
  const k2 = KERNEL * KERNEL;
  const w1 = conv.subarray(0, CONV1 * k2);
  const b1 = conv.subarray(CONV1 * k2, CONV1 * k2 + CONV1);
  const w2 = conv.subarray(CONV1 * k2 + CONV1, CONV1 * k2 + CONV1 + CONV2 * CONV1 * k2);
  const b2 = conv.subarray(CONV1 * k2 + CONV1 + CONV2 * CONV1 * k2);
  const half = SIDE / 2;
  const out = new Float32Array(B * FLAT);
  const a1 = new Float32Array(CONV1 * SIDE * SIDE);
  const p1 = new Float32Array(CONV1 * half * half);
  const a2 = new Float32Array(CONV2 * half * half);
  const acc = new Float64Array(SIDE * SIDE);
  const img = pixels instanceof Float32Array ? pixels : Float32Array.from(pixels);
  for (let n = 0; n < B; n++) {
    convRelu(a1, img.subarray(n * PIXELS, (n + 1) * PIXELS), w1, b1, 1, CONV1, SIDE, acc);
    maxPool(p1, a1, CONV1, SIDE);
    convRelu(a2, p1, w2, b2, CONV1, CONV2, half, acc);
    maxPool(out.subarray(n * FLAT, (n + 1) * FLAT), a2, CONV2, half);
  }
  return out;
}

// convRelu sets y [oc, side, side] to relu(conv(x [ic, side, side], w) + b).
// For each output plane it adds one weight times a shifted input plane at a
// time, in rows the padding leaves whole: no bounds test in the inner loop.
function convRelu(y, x, w, b, ic, oc, side, acc) {
  const plane = side * side;
  for (let o = 0; o < oc; o++) {
    acc.fill(0, 0, plane);
    for (let c = 0; c < ic; c++) {
      const xc = c * plane;
      for (let u = 0; u < KERNEL; u++) {
        const iLo = Math.max(0, PAD - u), iHi = Math.min(side, side + PAD - u);
        for (let v = 0; v < KERNEL; v++) {
          const wv = w[((o * ic + c) * KERNEL + u) * KERNEL + v];
          const jLo = Math.max(0, PAD - v), jHi = Math.min(side, side + PAD - v);
          for (let i = iLo; i < iHi; i++) {
            const ro = i * side;
            const ri = xc + (i + u - PAD) * side + v - PAD;
            for (let j = jLo; j < jHi; j++) acc[ro + j] += wv * x[ri + j];
          }
        }
      }
    }
    const bo = b[o], yo = o * plane;
    for (let p = 0; p < plane; p++) y[yo + p] = Math.max(Math.fround(acc[p] + bo), 0);
  }
}

// maxPool sets y [ch, side/2, side/2] to the maxima of the 2×2 windows,
// stride 2, of x [ch, side, side].
function maxPool(y, x, ch, side) {
  const h = side / 2;
  for (let c = 0; c < ch; c++) {
    for (let i = 0; i < h; i++) {
      const r0 = (c * side + 2 * i) * side, r1 = r0 + side;
      for (let j = 0; j < h; j++) {
        y[(c * h + i) * h + j] = Math.max(x[r0 + 2 * j], x[r0 + 2 * j + 1], x[r1 + 2 * j], x[r1 + 2 * j + 1]);
      }
    }
  }
}

// initPayload is init's payload: u64 seed (a Number or a BigInt).
export function initPayload(seed) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(seed), true);
  return b;
}

// trainPayload is train's payload: u32 B, f32 lr (0 takes the actor's
// default, 0.05), B × FLAT f32 activations, B i32 labels. B is
// labels.length.
export function trainPayload(acts, labels, lr = 0) {
  return batchPayload(acts, labels, lr);
}

// evalPayload is eval's payload: u32 B, B × FLAT f32 activations, B i32
// labels.
export function evalPayload(acts, labels) {
  return batchPayload(acts, labels, null);
}

function batchPayload(acts, labels, lr) {
  const B = labels.length;
  if (acts.length !== B * FLAT) {
    throw new Error(`${acts.length} activations for ${B} labels`);
  }
  const head = lr === null ? 4 : 8;
  const b = new Uint8Array(head + 4 * acts.length + 4 * B);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, B, true);
  if (lr !== null) dv.setFloat32(4, lr, true);
  let at = head;
  for (let i = 0; i < acts.length; i++, at += 4) dv.setFloat32(at, acts[i], true);
  for (let i = 0; i < B; i++, at += 4) dv.setInt32(at, labels[i], true);
  return b;
}

// decodeTrainReply decodes train's reply (an ArrayBuffer or a typed
// array): f32 loss (the batch's mean cross-entropy before the step), u32
// correct, u32 steps since init, then B × FLAT f32 gradient of the loss
// with respect to the activations, B from the length.
export function decodeTrainReply(bytes) {
  const dv = view(bytes);
  if (dv.byteLength < 12 || (dv.byteLength - 12) % (4 * FLAT) !== 0) {
    throw new Error(`train reply of ${dv.byteLength} bytes: want 12 + B×${4 * FLAT}`);
  }
  const grad = new Float32Array((dv.byteLength - 12) / 4);
  for (let i = 0; i < grad.length; i++) grad[i] = dv.getFloat32(12 + 4 * i, true);
  return {
    loss: dv.getFloat32(0, true),
    correct: dv.getUint32(4, true),
    steps: dv.getUint32(8, true),
    grad,
  };
}

// decodeEvalReply decodes eval's reply: f32 loss, u32 correct.
export function decodeEvalReply(bytes) {
  const dv = view(bytes);
  if (dv.byteLength !== 8) throw new Error(`eval reply of ${dv.byteLength} bytes: want 8`);
  return { loss: dv.getFloat32(0, true), correct: dv.getUint32(4, true) };
}

// decodeStats decodes stats' reply: u32 steps, u64 images trained on, u64
// of them right, f64 sum over steps of B × the mean loss.
export function decodeStats(bytes) {
  const dv = view(bytes);
  if (dv.byteLength !== 28) throw new Error(`stats reply of ${dv.byteLength} bytes: want 28`);
  const examples = Number(dv.getBigUint64(4, true));
  const lossSum = dv.getFloat64(20, true);
  return {
    steps: dv.getUint32(0, true),
    examples,
    correct: Number(dv.getBigUint64(12, true)),
    lossSum,
    meanLoss: examples ? lossSum / examples : 0,
  };
}

function view(bytes) {
  if (bytes instanceof ArrayBuffer) return new DataView(bytes);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
