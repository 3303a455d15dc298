// driver.mjs runs split.js for split_test.go: it reads its inputs from the
// directory named by its argument and writes its outputs there.
//
//	in:  conv.bin (f32 conv weights), pixels.bin (B×784 f32), labels.bin
//	     (B i32), reply.bin (a train reply), meta.json {"B", "lr", "seed"}
//	out: features.bin (f32), train.bin, eval.bin, init.bin (payloads),
//	     grad.bin (the decoded reply's gradient, f32), out.json (the rest)
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as split from './split.mjs';

const dir = process.argv[2];
const read = (name) => readFileSync(join(dir, name));
const floats = (buf) => new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
const bytes = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const meta = JSON.parse(read('meta.json'));
const conv = split.convFromBytes(read('conv.bin'));
const pixels = floats(read('pixels.bin'));
const lb = read('labels.bin');
const labels = new Int32Array(lb.buffer.slice(lb.byteOffset, lb.byteOffset + lb.byteLength));

const start = performance.now();
const acts = split.features(conv, pixels, meta.B);
const ms = performance.now() - start;
writeFileSync(join(dir, 'features.bin'), bytes(acts));
writeFileSync(join(dir, 'train.bin'), split.trainPayload(acts, labels, meta.lr));
writeFileSync(join(dir, 'eval.bin'), split.evalPayload(acts, labels));
writeFileSync(join(dir, 'init.bin'), split.initPayload(BigInt(meta.seed)));
const r = split.decodeTrainReply(read('reply.bin'));
writeFileSync(join(dir, 'grad.bin'), bytes(r.grad));
const ev = split.decodeEvalReply(read('reply.bin').subarray(0, 8));
const st = split.decodeStats(read('stats.bin'));
writeFileSync(join(dir, 'out.json'), JSON.stringify({ loss: r.loss, correct: r.correct, steps: r.steps, eval: ev, stats: st, ms }));
