// The page of `accelnode serve`: t-SNE, digit recognition and split
// learning on the node, every job and actor call sent sealed in an
// encrypted session and every receipt checked here, in the browser
// (docs/api.md, "Encrypted sessions and signed receipts"). tweetnacl-js
// (vendor/nacl-fast.min.js) and canonical.js are classic scripts loaded
// before this module: they define nacl and verifyReceipt. split.js, a copy
// of examples/split-dense/split.js, computes the conv layers of split
// learning and codes the actor's payloads.

import * as split from './split.js';

const nacl = globalThis.nacl;
const verifyReceipt = globalThis.verifyReceipt;

const $ = (id) => document.getElementById(id);
const TOKEN = 'accelnode.token';

const state = {
  token: sessionStorage.getItem(TOKEN) || '',
  info: null, // GET /v1/info
  node: null, // GET /v1/node: the key receipts must be signed with
  config: null, // GET /web/config
  models: [], // names of the node's models
  session: null, // {id, key: the shared key of nacl.box.before, expires}
  modules: {}, // the page's guests stored for this key: name -> sha256
  busy: false,
};

// The page's guests, by the names the node loads them under.
const GUESTS = {
  tsne: { what: 't-SNE guest', file: 'tsne-mnist' },
  mnist: { what: 'digit recognition guest', file: 'mnist-classify' },
  split: { what: 'split learning actor', file: 'split-dense' },
};

// ---- bytes ----

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function sha256Hex(bytes) {
  if (!globalThis.crypto || !crypto.subtle) return null; // only in a secure context
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- errors in words ----

class NodeError extends Error {
  constructor(message, kind = '') {
    super(message);
    this.kind = kind;
  }
}

// problemKind is the last part of a problem's type, urn:accelnode:problem:KIND.
function problemKind(p) {
  return p && typeof p.type === 'string' ? p.type.slice(p.type.lastIndexOf(':') + 1) : '';
}

// toError turns a problem the node answered into words a person reads.
function toError(res, p) {
  const kind = problemKind(p);
  const detail = (p && p.detail) || '';
  const wait = res.headers.get('Retry-After');
  const later = wait ? ` Try again in ${wait} s.` : ' Try again in a moment.';
  switch (kind) {
    case 'unauthorized':
      return new NodeError(state.token ? 'The node refused this API key: enter a valid one.' : 'This node needs an API key: enter one above.', kind);
    case 'forbidden':
      return new NodeError(`Your API key may not do this: ${detail}.`, kind);
    case 'queue-full':
      return new NodeError('The node is busy: its queue of jobs is full.' + later, kind);
    case 'quota':
      return new NodeError(`Your API key has reached its quota (${detail}).` + later, kind);
    case 'unavailable':
      return new NodeError(`The node is not taking work just now (${detail}).` + later, kind);
    case 'too-large':
      return new NodeError(`That is more data than the node takes in one request (${detail}). Try fewer points.`, kind);
    case 'invalid-job': {
      const m = /model "([^"]+)" is not registered/.exec(detail);
      if (m) {
        return new NodeError(`This node has no model named “${m[1]}”. Its operator can load one at start with ` +
          `--model ${m[1]}=bin/mnist.onnx (make demo writes that file), or upload one.`, 'missing-model');
      }
      return new NodeError(`The node cannot run this job: ${detail}`, kind);
    }
    case 'actor-limit':
      return new NodeError('The node runs as many actors as it allows, for your key or in all, or this actor has too many ' +
        `calls waiting (${detail}). Stop an actor you no longer need (DELETE /v1/actors/{id}), or try again later.`, kind);
    case 'actor-failed':
      return new NodeError(`The actor’s call failed: ${detail}. The actor keeps its state from before the call.`, kind);
    case 'internal':
      return new NodeError(`The node failed: ${detail}`, kind);
  }
  if (!p) return new NodeError(`The node answered ${res.status} ${res.statusText} without saying why.`, 'http');
  return new NodeError(`${p.title || 'The node refused the request'}: ${detail}`, kind);
}

// ---- talking to the node ----

async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  try {
    return await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new NodeError('The node did not answer: is it still running, and can this browser reach it?', 'network');
  }
}

async function readJSON(res) {
  const t = await res.text();
  try {
    return t ? JSON.parse(t) : null;
  } catch (e) {
    return null;
  }
}

async function api(method, path, body) {
  const res = await send(method, path, body);
  const data = await readJSON(res);
  if (!res.ok) throw toError(res, data);
  return data;
}

// openSession makes a key pair (nacl.box.keyPair draws on
// crypto.getRandomValues), sends its public half, and keeps the shared key
// alone; the secret key is wiped.
async function openSession() {
  const kp = nacl.box.keyPair();
  try {
    const s = await api('POST', '/v1/sessions', { public_key: toBase64(kp.publicKey) });
    const nodeKey = fromBase64(s.public_key);
    if (nodeKey.length !== nacl.box.publicKeyLength) {
      throw new NodeError('The node sent a session key of the wrong size; the page will not use it.');
    }
    state.session = { id: s.id, key: nacl.box.before(nodeKey, kp.secretKey), expires: new Date(s.expires_at) };
  } finally {
    kp.secretKey.fill(0);
  }
  showSession();
}

function showSession() {
  const s = state.session;
  $('fact-session').textContent = s ? `${s.id.slice(0, 8)}… until ${s.expires.toLocaleTimeString()}` : 'none yet';
  $('fact-session').title = s ? `Encrypted session ${s.id}` : '';
}

// seal returns nonce || box(plain, nonce, k), with a fresh random nonce.
function seal(plain, key) {
  const nonce = nacl.randomBytes(nacl.box.nonceLength);
  const box = nacl.box.after(plain, nonce, key);
  const msg = new Uint8Array(nonce.length + box.length);
  msg.set(nonce);
  msg.set(box, nonce.length);
  return msg;
}

function unseal(msg, key) {
  const n = nacl.box.nonceLength;
  if (msg.length < n + nacl.box.overheadLength) return null;
  return nacl.box.open.after(msg.subarray(n), msg.subarray(0, n), key);
}

// sealedPost seals plain to the session route path (under
// /v1/sessions/{id}) and opens the answer, which is sealed once the node
// has opened the request. A problem, sealed or not, is thrown in words; a
// session the node no longer knows, as the kind 'session-gone'.
async function sealedPost(path, plain) {
  const s = state.session;
  const started = performance.now();
  const res = await send('POST', `/v1/sessions/${encodeURIComponent(s.id)}${path}`, { sealed: toBase64(seal(plain, s.key)) });
  const data = await readJSON(res);
  const ms = performance.now() - started;
  if (!data || typeof data.sealed !== 'string') {
    // Refused before the node opened it: an ordinary problem.
    const kind = problemKind(data);
    if (kind === 'session-expired' || (kind === 'not-found' && res.status === 404)) {
      throw new NodeError('The encrypted session has ended.', 'session-gone');
    }
    throw toError(res, data);
  }
  const opened = unseal(fromBase64(data.sealed), s.key);
  if (!opened) {
    throw new NodeError('The node’s answer failed authentication: it was altered on the way, or sealed with other keys. The page used nothing of it.');
  }
  const answer = JSON.parse(text.decode(opened));
  if (answer.problem) throw toError(res, answer.problem);
  return { data, answer, ms };
}

// sealedInvoke sends one job request sealed and opens the answer.
async function sealedInvoke(req) {
  const { data, answer, ms } = await sealedPost('/invoke', utf8.encode(JSON.stringify(req)));
  return { job: data.job, result: answer.result, receipt: answer.receipt, ms };
}

// inSession runs sendIt (a sealed request) in the session, opening one first
// where there is none, and once more where the node says the session has
// ended: a request refused so was not run.
async function inSession(sendIt, ui) {
  let reopened = false;
  for (;;) {
    if (!state.session) await openSession();
    try {
      return await sendIt();
    } catch (e) {
      if (e.kind !== 'session-gone') throw e;
      state.session = null;
      showSession();
      if (reopened) throw new NodeError('The node ended the new encrypted session at once; try again.');
      reopened = true;
      ui.notice('Your encrypted session had expired, so the page opened a new one and sent the request again.');
    }
  }
}

// runJob runs req sealed in the session.
function runJob(req, ui) {
  return inSession(() => sealedInvoke(req), ui);
}

// ensureModule stores the page's guest name for this key and returns its
// sha256.
async function ensureModule(name) {
  if (state.modules[name]) return state.modules[name];
  const g = GUESTS[name];
  if (!state.config.modules[name]) {
    throw new NodeError(`The ${g.what} is not loaded on this node. Its operator can start the node with ` +
      `--web-module ${name}=bin/examples/${g.file}.wasm.`, 'missing-module');
  }
  const b = await api('POST', `/web/modules/${name}`);
  state.modules[name] = b.sha256;
  return b.sha256;
}

// checkReceipt verifies a job's signed receipt here: the signature over its
// canonical JSON, the signer against GET /v1/node, and that it names this
// job and this output.
async function checkReceipt(run) {
  if (!run.receipt) return { ok: false, text: 'The node sent no receipt with this result.' };
  const receipt = verifyReceipt(JSON.stringify(run.receipt), nacl);
  if (!receipt) return { ok: false, text: 'Receipt NOT verified: its signature does not match what it says.' };
  if (receipt.node !== state.node.public_key) {
    return { ok: false, text: 'Receipt NOT verified: it is signed by another key than this node’s (GET /v1/node).' };
  }
  if (receipt.job !== run.job) {
    return { ok: false, text: `Receipt NOT verified: it names job ${receipt.job}, not this job, ${run.job}.` };
  }
  const out = await sha256Hex(fromBase64(run.result.stdout));
  if (out !== null && out !== receipt.stdout_sha256) {
    return { ok: false, text: 'Receipt NOT verified: the output received is not the output it signs.' };
  }
  const note = out === null ? ' (the output’s hash was not checked: this browser computes SHA-256 only over HTTPS or on localhost)' : '';
  return { ok: true, text: `Receipt verified, signed by ${state.node.fingerprint}${note}`, receipt };
}

function showReceipt(el, check) {
  el.hidden = false;
  el.className = 'receipt ' + (check.ok ? 'ok' : 'bad');
  el.replaceChildren();
  const head = document.createElement('strong');
  head.textContent = check.text;
  el.append(head);
  if (check.receipt) {
    const r = check.receipt;
    const line = document.createElement('span');
    line.textContent = `Job ${r.job} · ${r.backend}, ${r.mode} mode · output sha256 ${r.stdout_sha256.slice(0, 16)}… · ${r.units} units`;
    el.append(line);
  }
}

// ---- panel helpers ----

function panelUI(prefix) {
  const status = $(prefix + '-status');
  const problem = $(prefix + '-problem');
  return {
    busy(msg) {
      status.textContent = msg;
      status.classList.add('busy');
    },
    done(msg) {
      status.textContent = msg || '';
      status.classList.remove('busy');
    },
    notice(msg) {
      const p = document.createElement('p');
      p.className = 'notice-line';
      p.textContent = msg;
      status.after(p);
    },
    problem(msg) {
      problem.textContent = msg;
      problem.hidden = !msg;
    },
    reset() {
      problem.hidden = true;
      status.parentElement.querySelectorAll('.notice-line').forEach((n) => n.remove());
    },
  };
}

function fail(ui, e) {
  ui.done('');
  if (e.kind === 'unauthorized') showKeyForm(e.message);
  ui.problem(e instanceof NodeError ? e.message : `Something went wrong in the page: ${e.message}`);
  if (!(e instanceof NodeError)) console.error(e);
}

function setFacts(dl, rows) {
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = v;
    div.append(dt, dd);
    dl.append(div);
  }
}

function setBusy(on) {
  state.busy = on;
  const ready = !!(nacl && state.node);
  $('tsne-run').disabled = on || !ready;
  $('digit-run').disabled = on || !ready || !pad.inked;
  $('split-run').disabled = on || !ready;
  $('split-reset').disabled = on || !ready;
  $('split-stop').disabled = !sp.running || sp.stop;
}

function guestFailure(what, r, stderr) {
  const last = stderr.trim().split('\n').filter((l) => !l.startsWith('kl:')).pop() || '';
  const why = {
    deadline: 'it ran past its deadline', budget: 'it used up its compute budget', memory: 'it needed more memory than it may use',
    trap: 'it trapped', canceled: 'it was stopped',
  }[r.outcome];
  if (why) return new NodeError(`The ${what} stopped: ${why}. ${last}`);
  return new NodeError(`The ${what} failed (exit code ${r.exit_code}): ${last || 'it said nothing'}`);
}

// jobNode returns what is local to the node of a finished job (its backend,
// device and timings, GET /v1/jobs/{id}), or null: the page shows less then,
// and the run stands.
async function jobNode(id) {
  try {
    return (await api('GET', `/v1/jobs/${encodeURIComponent(id)}`)).node || null;
  } catch (e) {
    return null;
  }
}

function backendOf(check, node, backend, mode) {
  const r = check.receipt || {};
  const name = r.backend || backend || '–';
  const device = node && node.device ? ` on ${node.device}` : '';
  return `${name}${device}, ${r.mode || mode} mode`;
}

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// keyValues parses "name: a=1 b=2" into {a: "1", b: "2"}.
function keyValues(line) {
  const out = {};
  for (const m of line.matchAll(/(\w+)=(\S+)/g)) out[m[1]] = m[2];
  return out;
}

// ---- t-SNE ----

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#5f6b7a'];

function colourOf(i) {
  return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360} 55% 50%)`;
}

// parseCSV reads label,x1,...,xD lines; a first line whose label is not an
// integer is a header.
function parseCSV(src) {
  const labels = [];
  const values = [];
  let d = 0;
  const lines = src.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const f = line.split(',');
    if (!/^[+-]?\d+$/.test(f[0].trim())) {
      if (labels.length === 0 && i === 0) continue;
      throw new NodeError(`Line ${i + 1} of the CSV: the label “${f[0]}” is not a whole number.`);
    }
    if (d === 0) d = f.length - 1;
    if (d < 1) throw new NodeError(`Line ${i + 1} of the CSV has a label and no coordinates: want label,x1,…,xD.`);
    if (f.length - 1 !== d) throw new NodeError(`Line ${i + 1} of the CSV has ${f.length - 1} coordinates, where the first point has ${d}.`);
    labels.push(parseInt(f[0], 10));
    for (let j = 1; j < f.length; j++) {
      const v = Number(f[j]);
      if (f[j].trim() === '' || !Number.isFinite(v)) throw new NodeError(`Line ${i + 1} of the CSV: coordinate ${j}, “${f[j]}”, is not a number.`);
      values.push(v);
    }
  }
  return { n: labels.length, d, labels: Int32Array.from(labels), values: Float32Array.from(values), encoding: 2 };
}

// encodePoints writes the guest's binary form: "apts", u32 N, D and the
// encoding (1: u8, 2: f32), N i32 labels, then the values.
function encodePoints(p) {
  const width = p.encoding === 1 ? 1 : 4;
  const buf = new ArrayBuffer(16 + 4 * p.n + width * p.n * p.d);
  const v = new DataView(buf);
  utf8.encode('apts').forEach((b, i) => v.setUint8(i, b));
  v.setUint32(4, p.n, true);
  v.setUint32(8, p.d, true);
  v.setUint32(12, p.encoding, true);
  let o = 16;
  for (const l of p.labels) { v.setInt32(o, l, true); o += 4; }
  if (p.encoding === 1) {
    new Uint8Array(buf, o).set(p.values);
  } else {
    for (const x of p.values) { v.setFloat32(o, x, true); o += 4; }
  }
  return new Uint8Array(buf);
}

function numberField(id, name, lo, hi, integer) {
  const raw = $(id).value.trim();
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    throw new NodeError(`${name}: want ${integer ? 'a whole number' : 'a number'} from ${lo} to ${hi}.`);
  }
  return v;
}

async function runTSNE(ev) {
  ev.preventDefault();
  if (state.busy) return;
  const ui = panelUI('tsne');
  ui.reset();
  setBusy(true);
  try {
    const source = document.querySelector('input[name="source"]:checked').value;
    let pca = numberField('tsne-pca', 'PCA dimensions', 0, 4096, true);
    const perplexity = numberField('tsne-perplexity', 'Perplexity', 1, 1000, false);
    const theta = numberField('tsne-theta', 'θ', 0, 1, false);
    const iters = numberField('tsne-iters', 'Iterations', 50, 5000, true);
    let points;
    if (source === 'mnist') {
      const n = numberField('tsne-n', 'Digits', 30, 10000, true);
      ui.busy(`Fetching ${n} MNIST test digits from the node…`);
      const s = await api('GET', `/web/mnist?n=${n}`);
      points = { n: s.n, d: s.rows * s.cols, labels: Int32Array.from(s.labels), values: fromBase64(s.pixels), encoding: 1 };
    } else {
      const file = $('tsne-file').files[0];
      if (!file) throw new NodeError('Choose a CSV file first.');
      ui.busy(`Reading ${file.name}…`);
      points = parseCSV(await file.text());
      if (points.n < 30) throw new NodeError(`The CSV holds ${points.n} points: t-SNE wants at least 30.`);
    }
    if (pca > points.d) {
      ui.notice(`The points have ${points.d} dimensions, so PCA keeps all ${points.d}.`);
      pca = points.d;
    }
    if (pca === 0 && points.d < 2) throw new NodeError('Points of one dimension need no embedding in two.');
    if (perplexity >= points.n / 3) {
      throw new NodeError(`Perplexity ${perplexity} is too high for ${points.n} points: keep it below a third of them (${Math.floor(points.n / 3)}).`);
    }
    const module = await ensureModule('tsne');
    const quality = points.n > 40 ? 10 : 0;
    const args = ['-data', '-', '-out', '-', '-pca', String(pca), '-perplexity', String(perplexity), '-theta', String(theta),
      '-iters', String(iters), '-quality-k', String(quality)];
    ui.busy(`Running t-SNE on ${points.n} points on the node, sealed…`);
    const run = await runJob({ module, args, stdin: toBase64(encodePoints(points)) }, ui);
    const r = run.result;
    const stderr = text.decode(fromBase64(r.stderr));
    if (r.outcome !== 'exited' || r.exit_code !== 0) throw guestFailure('t-SNE guest', r, stderr);
    const emb = parseEmbedding(text.decode(fromBase64(r.stdout)));
    const kl = [];
    let summary = {};
    for (const line of stderr.split('\n')) {
      if (line.startsWith('kl: ')) {
        const f = keyValues(line);
        kl.push({ it: Number(f.iteration), kl: Number(f.kl) });
      } else if (line.startsWith('tsne: ')) summary = keyValues(line);
    }
    drawScatter(emb);
    drawKL(kl, iters);
    const check = await checkReceipt(run);
    const node = await jobNode(run.job);
    const facts = [
      ['Points', `${emb.x.length} of ${points.d} dimensions`],
      ['PCA', pca === 0 ? 'none' : `to ${pca} (explained variance ${summary.evr || '–'})`],
      ['Iterations', `${summary.iters || '–'} (perplexity ${perplexity}, θ ${theta})`],
      ['Final KL', summary.kl || '–'],
    ];
    if (summary.trust10) facts.push(['Trustworthiness', summary.trust10], ['10-NN accuracy', summary.knn10]);
    facts.push(['Time on the node', node ? seconds(1000 * node.elapsed_seconds) : '–'], ['Round trip', seconds(run.ms)],
      ['Backend', backendOf(check, node, summary.backend, summary.mode)]);
    setFacts($('tsne-facts'), facts);
    showReceipt($('tsne-receipt'), check);
    ui.done(`Done: ${emb.x.length} points embedded.`);
  } catch (e) {
    fail(ui, e);
  } finally {
    setBusy(false);
  }
}

function parseEmbedding(csv) {
  const x = [], y = [], label = [];
  for (const line of csv.split('\n')) {
    const f = line.split(',');
    if (f.length !== 3 || f[0] === 'x') continue;
    x.push(Number(f[0]));
    y.push(Number(f[1]));
    label.push(Number(f[2]));
  }
  if (x.length === 0) throw new NodeError('The t-SNE guest sent back no points.');
  return { x, y, label };
}

// fit sizes a canvas to its box and the device's pixel ratio.
function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function drawScatter(emb) {
  const canvas = $('tsne-plot');
  const { ctx, w, h } = fit(canvas);
  const n = emb.x.length;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    x0 = Math.min(x0, emb.x[i]); x1 = Math.max(x1, emb.x[i]);
    y0 = Math.min(y0, emb.y[i]); y1 = Math.max(y1, emb.y[i]);
  }
  const pad = 18;
  const span = Math.max(x1 - x0, y1 - y0) || 1;
  const s = (Math.min(w, h) - 2 * pad) / span;
  const ox = (w - (x1 - x0) * s) / 2, oy = (h - (y1 - y0) * s) / 2;
  const labels = [...new Set(emb.label)].sort((a, b) => a - b);
  const index = new Map(labels.map((l, i) => [l, i]));
  const r = n <= 500 ? 3.4 : n <= 3000 ? 2.5 : 1.7;
  ctx.clearRect(0, 0, w, h);
  ctx.globalAlpha = 0.85;
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = colourOf(index.get(emb.label[i]));
    ctx.beginPath();
    ctx.arc(ox + (emb.x[i] - x0) * s, h - (oy + (emb.y[i] - y0) * s), r, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  canvas.dataset.points = String(n);
  canvas.dataset.labels = String(labels.length);
  const counts = new Map();
  for (const l of emb.label) counts.set(l, (counts.get(l) || 0) + 1);
  const legend = $('tsne-legend');
  legend.replaceChildren();
  for (const l of labels) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'sw';
    sw.style.background = colourOf(index.get(l));
    li.append(sw, `${l} (${counts.get(l)})`);
    legend.append(li);
  }
  $('tsne-summary').textContent = `${n} points, ${labels.length} labels`;
}

function drawKL(points, iters) {
  const canvas = $('tsne-kl');
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.points = String(points.length);
  if (points.length === 0) return;
  const left = 42, right = 10, top = 10, bottom = 26;
  const maxIt = Math.max(iters, points[points.length - 1].it);
  const kls = points.map((p) => p.kl);
  const lo = Math.min(0, ...kls), hi = Math.max(...kls) * 1.08 || 1;
  const X = (it) => left + (it / maxIt) * (w - left - right);
  const Y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  // Early exaggeration: the first 250 iterations fit an exaggerated P.
  const ex = Math.min(250, maxIt);
  ctx.fillStyle = '#f1f4f8';
  ctx.fillRect(X(0), top, X(ex) - X(0), h - top - bottom);
  ctx.fillStyle = '#8a94a6';
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'left';
  ctx.fillText('exaggerated', X(0) + 4, h - bottom - 6);
  ctx.strokeStyle = '#c9cfd9';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top); ctx.lineTo(left, h - bottom); ctx.lineTo(w - right, h - bottom);
  ctx.stroke();
  ctx.fillStyle = '#5d6778';
  ctx.textAlign = 'right';
  ctx.fillText(hi.toFixed(1), left - 6, top + 8);
  ctx.fillText(lo.toFixed(1), left - 6, h - bottom);
  ctx.textAlign = 'center';
  ctx.fillText('0', X(0), h - 8);
  ctx.fillText(String(maxIt), X(maxIt) - 10, h - 8);
  ctx.fillText('iteration', (left + w - right) / 2, h - 8);
  ctx.strokeStyle = '#2563eb';
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(X(p.it), Y(p.kl)) : ctx.moveTo(X(p.it), Y(p.kl))));
  ctx.stroke();
  ctx.fillStyle = '#2563eb';
  for (const p of points) {
    ctx.beginPath();
    ctx.arc(X(p.it), Y(p.kl), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

// ---- digits ----

const pad = {
  canvas: null,
  ctx: null,
  inked: false,
  drawing: false,
  last: null,
};

function clearPad() {
  pad.ctx.fillStyle = '#fff';
  pad.ctx.fillRect(0, 0, pad.canvas.width, pad.canvas.height);
  pad.inked = false;
  showInput(null);
  setBusy(state.busy);
}

function padPoint(e) {
  const r = pad.canvas.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.canvas.width / r.width, y: (e.clientY - r.top) * pad.canvas.height / r.height };
}

function stroke(from, to) {
  const c = pad.ctx;
  c.strokeStyle = '#111';
  c.fillStyle = '#111';
  c.lineWidth = 22;
  c.lineCap = 'round';
  c.lineJoin = 'round';
  c.beginPath();
  c.moveTo(from.x, from.y);
  c.lineTo(to.x, to.y);
  c.stroke();
}

function setupPad() {
  pad.canvas = $('digit-pad');
  pad.ctx = pad.canvas.getContext('2d', { willReadFrequently: true });
  clearPad();
  const c = pad.canvas;
  c.addEventListener('pointerdown', (e) => {
    e.preventDefault();
    c.setPointerCapture(e.pointerId);
    pad.drawing = true;
    pad.last = padPoint(e);
    stroke(pad.last, pad.last);
  });
  c.addEventListener('pointermove', (e) => {
    if (!pad.drawing) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ce of events.length ? events : [e]) {
      const p = padPoint(ce);
      stroke(pad.last, p);
      pad.last = p;
    }
  });
  const end = () => {
    if (!pad.drawing) return;
    pad.drawing = false;
    padChanged();
  };
  c.addEventListener('pointerup', end);
  c.addEventListener('pointercancel', end);
  $('digit-clear').addEventListener('click', clearPad);
  $('digit-run').addEventListener('click', runDigit);
}

// padChanged shows what the model will see; the test calls it after
// painting the canvas itself.
function padChanged() {
  const img = mnistImage();
  pad.inked = img !== null;
  showInput(img);
  setBusy(state.busy);
}

// mnistImage turns the drawing into a 28×28 digit as MNIST's were made: the
// ink's bounding box scaled, aspect kept, to fit a 20×20 box (each pixel
// the average of the area it covers), then placed so that its centre of
// mass lies at the centre of the 28×28 field. It returns 784 bytes, 0 the
// background and 255 the ink, or null for an empty drawing.
function mnistImage() {
  const W = pad.canvas.width, H = pad.canvas.height;
  const px = pad.ctx.getImageData(0, 0, W, H).data;
  const ink = new Float32Array(W * H);
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const lum = (0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2]) / 255;
      const v = (1 - lum) * px[4 * i + 3] / 255;
      ink[i] = v;
      if (v > 0.05) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;
  // The square of side L around the bounding box, centred on it, maps
  // onto the 20×20 box: the longer side fills it, the aspect is kept.
  const L = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const sx = (x0 + x1 + 1) / 2 - L / 2, sy = (y0 + y1 + 1) / 2 - L / 2;
  const B = 20;
  const box = areaResample(ink, W, H, sx, sy, L, B);
  let m = 0, mx = 0, my = 0;
  for (let y = 0; y < B; y++) {
    for (let x = 0; x < B; x++) {
      const v = box[y * B + x];
      m += v; mx += v * (x + 0.5); my += v * (y + 0.5);
    }
  }
  const S = 28;
  const dx = Math.round(S / 2 - mx / m), dy = Math.round(S / 2 - my / m);
  const out = new Uint8Array(S * S);
  for (let y = 0; y < B; y++) {
    for (let x = 0; x < B; x++) {
      const tx = x + dx, ty = y + dy;
      if (tx < 0 || ty < 0 || tx >= S || ty >= S) continue;
      out[ty * S + tx] = Math.round(Math.min(1, box[y * B + x]) * 255);
    }
  }
  return out;
}

// areaResample averages the L×L square at (sx, sy) of src (W×H, zero
// outside) into B×B pixels, each the mean of the area it covers: a box
// filter, separable, with fractional coverage at the edges.
function areaResample(src, W, H, sx, sy, L, B) {
  const f = L / B;
  const spans = (start, size) => {
    const out = [];
    for (let t = 0; t < B; t++) {
      const a = start + t * f, b = a + f;
      const taps = [];
      for (let i = Math.floor(a); i < Math.ceil(b); i++) {
        const w = Math.min(b, i + 1) - Math.max(a, i);
        if (w > 0 && i >= 0 && i < size) taps.push([i, w / f]);
      }
      out.push(taps);
    }
    return out;
  };
  const xs = spans(sx, W), ys = spans(sy, H);
  const rows = new Float32Array(H * B); // each source row, resampled across
  for (let y = 0; y < H; y++) {
    for (let t = 0; t < B; t++) {
      let v = 0;
      for (const [i, w] of xs[t]) v += src[y * W + i] * w;
      rows[y * B + t] = v;
    }
  }
  const box = new Float32Array(B * B);
  for (let t = 0; t < B; t++) {
    for (let u = 0; u < B; u++) {
      let v = 0;
      for (const [j, w] of ys[t]) v += rows[j * B + u] * w;
      box[t * B + u] = v;
    }
  }
  return box;
}

function showInput(img) {
  const c = $('digit-input');
  const ctx = c.getContext('2d');
  const data = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = img ? img[i] : 0;
    data.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(data, 0, 0);
}

async function runDigit() {
  if (state.busy) return;
  const ui = panelUI('digit');
  ui.reset();
  const img = mnistImage();
  if (!img) {
    ui.problem('Draw a digit first.');
    return;
  }
  showInput(img);
  setBusy(true);
  try {
    const module = await ensureModule('mnist');
    ui.busy('Recognising on the node, sealed…');
    const run = await runJob({ module, models: ['mnist'], stdin: toBase64(img) }, ui);
    const r = run.result;
    const stderr = text.decode(fromBase64(r.stderr));
    if (r.outcome !== 'exited' || r.exit_code !== 0) {
      if (/model_open/.test(stderr)) throw new NodeError('This node has no model named “mnist”. Its operator can load one at start with --model mnist=bin/mnist.onnx (make demo writes that file).', 'missing-model');
      throw guestFailure('digit recognition guest', r, stderr);
    }
    const answer = JSON.parse(text.decode(fromBase64(r.stdout)));
    showBars(answer.probabilities);
    const check = await checkReceipt(run);
    const node = await jobNode(run.job);
    const best = answer.digit;
    $('digit-answer').textContent = `Most likely ${best}, at ${(100 * answer.probabilities[best]).toFixed(1)} %`;
    setFacts($('digit-facts'), [
      ['Model', answer.model], ['Backend', backendOf(check, node, answer.backend, answer.mode)],
      ['Time on the node', node ? seconds(1000 * node.elapsed_seconds) : '–'], ['Round trip', seconds(run.ms)], ['Job', run.job],
    ]);
    showReceipt($('digit-receipt'), check);
    ui.done('');
  } catch (e) {
    fail(ui, e);
  } finally {
    setBusy(false);
  }
}

function showBars(p) {
  const ol = $('digit-bars');
  ol.replaceChildren();
  let best = 0;
  p.forEach((v, i) => { if (v > p[best]) best = i; });
  p.forEach((v, i) => {
    const li = document.createElement('li');
    li.dataset.digit = String(i);
    li.dataset.p = String(v);
    if (i === best) li.className = 'best';
    const d = document.createElement('span');
    d.className = 'digit';
    d.textContent = String(i);
    const track = document.createElement('span');
    track.className = 'track';
    const fill = document.createElement('span');
    fill.className = 'fill';
    fill.style.width = `${Math.max(0, Math.min(1, v)) * 100}%`;
    fill.style.display = 'block';
    track.append(fill);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = `${(100 * v).toFixed(1)} %`;
    li.append(d, track, pct);
    ol.append(li);
  });
}

// ---- split learning ----

// sp is the split learning tab's state: the actor on the node, the conv
// weights, the digits, and each round trained since the last init.
const sp = {
  conv: null, // Float32Array of split.CONV_LEN, from GET /web/mnist-conv
  convModel: '', // the sha256 of the model they came from
  sample: null, // GET /web/mnist: the digits fetched so far
  actor: null, // {id, module, backend: the init reply's node info}
  holdout: 0, // the first digits, never trained on: fixed at init
  cursor: 0, // the training digits used since init
  history: [], // {step, loss, acc} a round
  heldout: null, // {n, correct, loss} of the last eval
  receipts: { ok: 0, bad: 0 },
  running: false,
  stop: false,
};

// splitCall calls the actor's method with payload, sealed in the session,
// and returns the call ({reply, code, units, elapsed_seconds, receipt})
// once its receipt checks; a method's own error is thrown in words.
async function splitCall(method, payload, ui) {
  const id = sp.actor.id;
  let out;
  try {
    out = await inSession(() => sealedPost(`/actors/${encodeURIComponent(id)}/call/${method}`, payload), ui);
  } catch (e) {
    if (e.kind === 'not-found' && /actor/.test(e.message)) {
      sp.actor = null;
      showSplitFacts();
      throw new NodeError('The node no longer has this page’s actor (it was stopped, or its state was lost). ' +
        'Train again to start a new one.', 'actor-gone');
    }
    throw e;
  }
  const call = out.answer.call;
  if (!call) throw new NodeError('The node answered the actor call with neither a reply nor a problem.');
  call.reply = fromBase64(call.reply);
  call.ms = out.ms;
  await checkCallReceipt(call, payload, method);
  if (call.code !== 0) {
    throw new NodeError(`The split learning actor refused ${method} (code ${call.code}): ${text.decode(call.reply) || 'it said nothing'}`);
  }
  return call;
}

// checkCallReceipt checks an actor call's receipt here: its signature, the
// signer against GET /v1/node, and that it names this actor, this method,
// the payload sent, the reply received and the method's code.
async function checkCallReceipt(call, payload, method) {
  const bad = (why) => {
    sp.receipts.bad++;
    showCallReceipts(`Receipt NOT verified: ${why}`);
    throw new NodeError(`The receipt of the ${method} call did not check: ${why} The page stopped training.`);
  };
  if (!call.receipt) bad('the node sent no receipt with the call.');
  const r = verifyReceipt(JSON.stringify(call.receipt), nacl);
  if (!r) bad('its signature does not match what it says.');
  if (r.node !== state.node.public_key) bad('it is signed by another key than this node’s (GET /v1/node).');
  if (!String(r.job).startsWith(`actor/${sp.actor.id}/call/`) || !Array.isArray(r.args) || r.args.length !== 1 || r.args[0] !== method) {
    bad(`it names ${r.job} ${r.args}, not this actor’s ${method}.`);
  }
  if (r.exit_code !== call.code) bad(`it signs code ${r.exit_code}, not ${call.code}.`);
  const [input, output] = await Promise.all([sha256Hex(payload), sha256Hex(call.reply)]);
  if (input !== null && input !== r.stdin_sha256) bad('the payload sent is not the one it signs.');
  if (output !== null && output !== r.stdout_sha256) bad('the reply received is not the one it signs.');
  sp.receipts.ok++;
  const note = output === null ? ' (the hashes were not checked: this browser computes SHA-256 only over HTTPS or on localhost)' : '';
  showCallReceipts(`Receipts verified: ${sp.receipts.ok} of ${sp.receipts.ok + sp.receipts.bad} calls, signed by ${state.node.fingerprint}${note}`,
    `Last: ${r.job} · ${r.args[0]} · ${r.backend}, ${r.mode} mode · reply sha256 ${r.stdout_sha256.slice(0, 16)}… · ${r.units} units`);
}

function showCallReceipts(head, line) {
  const el = $('split-receipt');
  el.hidden = false;
  el.className = 'receipt ' + (sp.receipts.bad ? 'bad' : 'ok');
  el.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = head;
  el.append(strong);
  if (line) {
    const span = document.createElement('span');
    span.textContent = line;
    el.append(span);
  }
}

// loadConv fetches the conv layers' weights of the node's model mnist.
async function loadConv(ui) {
  if (sp.conv) return;
  ui.busy('Fetching the conv layers of the node’s model “mnist”…');
  const res = await send('GET', '/web/mnist-conv');
  if (!res.ok) {
    const p = await readJSON(res);
    const kind = problemKind(p);
    if (kind === 'not-found' && /no model named/.test((p && p.detail) || '')) {
      throw new NodeError('This node has no model named “mnist”, whose conv layers this page computes. Its operator can load one ' +
        'at start with --model mnist=bin/mnist.onnx (make demo writes that file).', 'missing-model');
    }
    if (kind === 'invalid-model') {
      throw new NodeError(`The node’s model “mnist” is not the MNIST network this page splits: ${p.detail}.`, kind);
    }
    throw toError(res, p);
  }
  sp.conv = split.convFromBytes(await res.arrayBuffer());
  sp.convModel = (res.headers.get('ETag') || '').replaceAll('"', '');
}

// loadDigits makes sure the first n test digits are at hand.
async function loadDigits(n, ui) {
  if (sp.sample && sp.sample.n >= n) return;
  ui.busy(`Fetching ${n} MNIST test digits from the node…`);
  const s = await api('GET', `/web/mnist?n=${n}`);
  if (s.rows * s.cols !== split.PIXELS) throw new NodeError(`The node’s digits are ${s.rows}×${s.cols}, not 28×28.`);
  sp.sample = { n: s.n, labels: s.labels, pixels: fromBase64(s.pixels) };
}

// batchOf returns digits [from, from+count) of the sample as pixels/255
// and labels.
function batchOf(from, count) {
  const px = new Float32Array(count * split.PIXELS);
  const src = sp.sample.pixels.subarray(from * split.PIXELS, (from + count) * split.PIXELS);
  for (let i = 0; i < px.length; i++) px[i] = src[i] / 255;
  return { px, labels: Int32Array.from(sp.sample.labels.slice(from, from + count)) };
}

// startActor stores the split-dense guest for this key and starts an
// actor of it. On a node that serves on cuda, whose kernels do not train
// yet, the actor runs on ref where the node has it.
async function startActor(ui) {
  const module = await ensureModule('split');
  ui.busy('Starting an actor on the node…');
  const req = { module, snapshot: 'on-evict' };
  const ref = (state.info.backends || []).find((b) => b.name === 'ref' && b.available);
  if (state.info.backend === 'cuda' && ref) {
    req.backend = 'ref';
    ui.notice('The node serves on cuda, whose kernels do not train yet: the actor runs on ref.');
  }
  const a = await api('POST', '/v1/actors', req);
  sp.actor = { id: a.id, module: a.module, snapshot: a.snapshot, backend: null };
}

// initActor calls init: the dense layers drawn again, the momentum and
// the counters zeroed. The held-out digits are fixed from here.
async function initActor(ui) {
  ui.busy('Drawing the dense layers on the node (init)…');
  const call = await splitCall('init', new Uint8Array(0), ui);
  try {
    sp.actor.backend = JSON.parse(text.decode(call.reply));
  } catch (e) {
    sp.actor.backend = null;
  }
  sp.holdout = numberField('split-holdout', 'Held-out digits', 0, 2000, true);
  sp.cursor = 0;
  sp.history = [];
  sp.heldout = null;
  drawSplit();
  showHeldout();
  showSplitFacts();
}

async function runSplit(ev) {
  ev.preventDefault();
  if (state.busy) return;
  const ui = panelUI('split');
  ui.reset();
  sp.running = true;
  sp.stop = false;
  setBusy(true);
  try {
    const rounds = numberField('split-rounds', 'Rounds', 1, 1000, true);
    const B = numberField('split-batch', 'Digits a round', 1, split.MAX_BATCH, true);
    const lr = numberField('split-lr', 'Learning rate', 0.0001, 1, false);
    const holdout = numberField('split-holdout', 'Held-out digits', 0, 2000, true);
    await loadConv(ui);
    if (!sp.actor) {
      await startActor(ui);
      await initActor(ui);
    } else if (holdout !== sp.holdout) {
      ui.notice(`The held-out digits changed from ${sp.holdout} to ${holdout}: the actor starts again, so that none of them was trained on.`);
      await initActor(ui);
    }
    await loadDigits(Math.min(10000, sp.holdout + sp.cursor + rounds * B), ui);
    const available = sp.sample.n - sp.holdout; // the training digits, used in turn
    if (available < 1) throw new NodeError(`The node offers ${sp.sample.n} digits: none is left to train on beside the ${sp.holdout} held out.`);
    let done = 0;
    for (; done < rounds && !sp.stop; done++) {
      ui.busy(`Round ${done + 1} of ${rounds}: conv layers here, dense layers on the node…`);
      const at = sp.holdout + (sp.cursor % available);
      const count = Math.min(B, sp.holdout + available - at);
      const { px, labels } = batchOf(at, count);
      const t0 = performance.now();
      const acts = split.features(sp.conv, px, count);
      const convMs = performance.now() - t0;
      const payload = split.trainPayload(acts, labels, lr);
      const call = await splitCall('train', payload, ui);
      const r = split.decodeTrainReply(call.reply);
      sp.cursor += count;
      let norm = 0;
      for (const g of r.grad) norm += g * g;
      sp.history.push({ step: r.steps, loss: r.loss, acc: r.correct / count });
      drawSplit();
      showSplitFacts();
      setFacts($('split-round'), [
        ['Round', `${done + 1} of ${rounds} (step ${r.steps} since init)`],
        ['Loss', r.loss.toFixed(4)],
        ['Accuracy', `${r.correct} of ${count} (${(100 * r.correct / count).toFixed(1)} %)`],
        ['Gradient back', `${count} × ${split.FLAT} f32, ${(4 * r.grad.length).toLocaleString('en')} bytes, ‖g‖ ${norm === 0 ? '0' : Math.sqrt(norm).toExponential(3)}`],
        ['Sent', `${(payload.length / 1024).toFixed(0)} KiB of activations and labels, sealed`],
        ['Conv layers here', seconds(convMs)],
        ['Call on the node', `${seconds(1000 * call.elapsed_seconds)}, ${call.units.toLocaleString('en')} units`],
        ['Round trip', seconds(call.ms)],
      ]);
      await new Promise((resolve) => requestAnimationFrame(() => resolve())); // let the chart show
    }
    if (sp.stop) {
      ui.done(`Stopped after ${done} of ${rounds} rounds.`);
      return;
    }
    if (sp.holdout > 0) {
      ui.busy(`Scoring ${sp.holdout} held-out digits (eval)…`);
      let correct = 0, loss = 0;
      for (let at = 0; at < sp.holdout; at += split.MAX_BATCH) {
        const count = Math.min(split.MAX_BATCH, sp.holdout - at);
        const { px, labels } = batchOf(at, count);
        const call = await splitCall('eval', split.evalPayload(split.features(sp.conv, px, count), labels), ui);
        const e = split.decodeEvalReply(call.reply);
        correct += e.correct;
        loss += e.loss * count;
      }
      sp.heldout = { n: sp.holdout, correct, loss: loss / sp.holdout, step: sp.history.length ? sp.history[sp.history.length - 1].step : 0 };
      showHeldout();
      drawSplit();
    }
    ui.done(`Done: ${done} rounds of ${B} digits.`);
  } catch (e) {
    fail(ui, e);
  } finally {
    sp.running = false;
    sp.stop = false;
    setBusy(false);
  }
}

// resetSplit calls init on the actor: its dense layers drawn again.
async function resetSplit() {
  if (state.busy) return;
  const ui = panelUI('split');
  ui.reset();
  setBusy(true);
  try {
    if (!sp.actor) {
      sp.history = [];
      sp.heldout = null;
      drawSplit();
      showHeldout();
      ui.done('Nothing trained yet: Train starts an actor.');
      return;
    }
    await initActor(ui);
    ui.done(`Reset: the actor’s dense layers are drawn again (init, seed 1).`);
  } catch (e) {
    fail(ui, e);
  } finally {
    setBusy(false);
  }
}

function showHeldout() {
  const el = $('split-heldout');
  const h = sp.heldout;
  el.hidden = !h;
  if (!h) return;
  el.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = `Held-out accuracy ${(100 * h.correct / h.n).toFixed(1)} %`;
  el.append(strong, ` · ${h.correct} of ${h.n} digits never trained on, loss ${h.loss.toFixed(4)}, after ${h.step} steps`);
  el.dataset.correct = String(h.correct);
  el.dataset.n = String(h.n);
}

function showSplitFacts() {
  const a = sp.actor;
  if (!a) {
    setFacts($('split-facts'), [['Actor', 'none yet']]);
    return;
  }
  const b = a.backend;
  const seen = sp.history.length;
  setFacts($('split-facts'), [
    ['Actor', a.id],
    ['Backend', b ? `${b.backend}${b.device ? ' on ' + b.device : ''}, ${b.mode} mode` : '–'],
    ['Snapshot', a.snapshot],
    ['Module', `split-dense ${a.module.slice(0, 12)}…`],
    ['Conv weights', `model mnist ${sp.convModel.slice(0, 12)}…, ${split.CONV_LEN.toLocaleString('en')} values`],
    ['Trained', `${seen} rounds since init, ${sp.cursor.toLocaleString('en')} digits`],
  ]);
}

// drawSplit draws each round's loss (left axis) and accuracy (right axis,
// 0 to 100 %).
function drawSplit() {
  const canvas = $('split-chart');
  const { ctx, w, h } = fit(canvas);
  const pts = sp.history;
  canvas.dataset.rounds = String(pts.length);
  ctx.clearRect(0, 0, w, h);
  const left = 46, right = 46, top = 12, bottom = 30;
  const n = Math.max(pts.length, 10);
  const hi = Math.max(2.5, ...pts.map((p) => p.loss)) * 1.05;
  const X = (i) => left + (n <= 1 ? 0 : (i / (n - 1)) * (w - left - right));
  const YL = (v) => top + (1 - v / hi) * (h - top - bottom);
  const YA = (v) => top + (1 - v) * (h - top - bottom);
  ctx.font = '11px system-ui, sans-serif';
  ctx.strokeStyle = '#eef0f4';
  ctx.lineWidth = 1;
  for (const f of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(left, YA(f)); ctx.lineTo(w - right, YA(f));
    ctx.stroke();
  }
  ctx.strokeStyle = '#c9cfd9';
  ctx.beginPath();
  ctx.moveTo(left, top); ctx.lineTo(left, h - bottom); ctx.lineTo(w - right, h - bottom); ctx.lineTo(w - right, top);
  ctx.stroke();
  ctx.fillStyle = '#2563eb';
  ctx.textAlign = 'right';
  ctx.fillText(hi.toFixed(1), left - 6, top + 8);
  ctx.fillText('0', left - 6, h - bottom);
  ctx.fillStyle = '#c0661a';
  ctx.textAlign = 'left';
  ctx.fillText('100 %', w - right + 6, top + 8);
  ctx.fillText('50 %', w - right + 6, YA(0.5) + 4);
  ctx.fillText('0 %', w - right + 6, h - bottom);
  ctx.fillStyle = '#5d6778';
  ctx.textAlign = 'center';
  ctx.fillText('1', X(0), h - 10);
  ctx.fillText(String(n), X(n - 1), h - 10);
  ctx.fillText('round', (left + w - right) / 2, h - 10);
  if (sp.heldout) {
    const y = YA(sp.heldout.correct / sp.heldout.n);
    ctx.strokeStyle = '#c0661a';
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(left, y); ctx.lineTo(w - right, y);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#c0661a';
    ctx.textAlign = 'left';
    ctx.fillText('held out', left + 6, y - 5);
  }
  const line = (colour, Y, key) => {
    if (pts.length === 0) return;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(X(i), Y(p[key])) : ctx.moveTo(X(i), Y(p[key]))));
    ctx.stroke();
    ctx.fillStyle = colour;
    pts.forEach((p, i) => {
      ctx.beginPath();
      ctx.arc(X(i), Y(p[key]), 2.4, 0, 2 * Math.PI);
      ctx.fill();
    });
  };
  line('#f28e2b', YA, 'acc');
  line('#2563eb', YL, 'loss');
  const last = pts[pts.length - 1];
  $('split-summary').textContent = last
    ? `${pts.length} rounds · loss ${pts[0].loss.toFixed(3)} → ${last.loss.toFixed(3)} · accuracy ${(100 * pts[0].acc).toFixed(0)} % → ${(100 * last.acc).toFixed(0)} %`
    : 'Train to see each round.';
}

function setupSplit() {
  $('split-form').addEventListener('submit', runSplit);
  $('split-stop').addEventListener('click', () => {
    if (!sp.running) return;
    sp.stop = true;
    setBusy(state.busy);
    panelUI('split').busy('Stopping after this round…');
  });
  $('split-reset').addEventListener('click', resetSplit);
  showSplitFacts();
  drawSplit();
}

// ---- start ----

function banner(msg) {
  const b = $('banner');
  b.textContent = msg;
  b.hidden = !msg;
}

function showKeyForm(msg) {
  $('key-form').hidden = false;
  const p = $('key-problem');
  p.textContent = msg || '';
  p.hidden = !msg;
  $('key-input').focus();
}

function showTab(name) {
  for (const t of ['tsne', 'digits', 'split']) {
    const on = t === name;
    $('tab-' + t).setAttribute('aria-selected', String(on));
    $('panel-' + t).hidden = !on;
  }
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
}

async function connect() {
  try {
    state.info = await api('GET', '/v1/info');
  } catch (e) {
    if (e.kind === 'unauthorized') {
      showKeyForm(state.token ? e.message : '');
      return;
    }
    banner(e.message);
    return;
  }
  $('key-form').hidden = true;
  $('forget-key').hidden = !state.token;
  try {
    [state.node, state.config] = await Promise.all([api('GET', '/v1/node'), api('GET', '/web/config')]);
    const models = await api('GET', '/v1/models');
    state.models = (models.models || []).map((m) => m.name);
  } catch (e) {
    banner(e.message);
    return;
  }
  const fp = state.node.fingerprint;
  $('fact-node').textContent = fp.slice(0, 19) + '…';
  $('fact-node').title = `Signs receipts with ${fp}` + (state.info.version ? `; accelnode ${state.info.version}` : '');
  $('fact-backend').textContent = `${state.info.backend} · ${state.info.mode}`;
  if (!state.config.digits) {
    $('tsne-n').disabled = true;
    document.querySelector('input[name="source"][value="csv"]').checked = true;
    panelUI('tsne').notice('This node offers no MNIST digits (its operator can start it with --web-data DIR); upload a CSV instead.');
  }
  if (!state.models.includes('mnist')) {
    panelUI('digit').notice('This node has no model named “mnist” loaded yet: recognition will fail until its operator loads one (--model mnist=bin/mnist.onnx).');
    panelUI('split').notice('This node has no model named “mnist” loaded yet, whose conv layers this page computes: training will fail until its operator loads one (--model mnist=bin/mnist.onnx).');
  }
  if (!state.config.digits) {
    panelUI('split').notice('This node offers no MNIST digits to train on (its operator can start it with --web-data DIR).');
  }
  if (!state.config.modules.split) {
    panelUI('split').notice('This node has no split learning actor loaded (its operator can start it with --web-module split=bin/examples/split-dense.wasm).');
  }
  setBusy(false);
}

function start() {
  for (const t of ['tsne', 'digits', 'split']) $('tab-' + t).addEventListener('click', () => showTab(t));
  showTab(['tsne', 'digits', 'split'].includes(location.hash.slice(1)) ? location.hash.slice(1) : 'tsne');
  $('tsne-form').addEventListener('submit', runTSNE);
  $('tsne-file').addEventListener('change', () => {
    document.querySelector('input[name="source"][value="csv"]').checked = true;
  });
  setupPad();
  setupSplit();
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('key-input').value.trim();
    $('key-input').value = '';
    if (state.token) sessionStorage.setItem(TOKEN, state.token);
    state.session = null;
    state.modules = {};
    connect();
  });
  $('forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN);
    location.reload();
  });
  if (!nacl || !nacl.box || typeof verifyReceipt !== 'function') {
    banner('tweetnacl is missing from this build: run make deps, then build the node again. ' +
      'Without it the page can neither seal requests nor check receipts, so it sends nothing.');
    $('tsne-run').disabled = true;
    $('digit-run').disabled = true;
    $('split-run').disabled = true;
    $('split-reset').disabled = true;
    state.busy = true; // nothing may run
    return;
  }
  connect();
}

// The test paints a digit onto the pad itself, then asks the page to look;
// it reads split learning's rounds as the chart draws them.
globalThis.accelnodePage = {
  padChanged,
  splitRounds: () => sp.history.map((p) => ({ ...p })),
  splitActor: () => (sp.actor ? sp.actor.id : ''),
};

start();
