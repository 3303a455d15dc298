// Runs one command, read as JSON from stdin, with tweetnacl as a browser
// would, and prints the result as JSON. Bytes travel as hex. Used by
// crypto/interop_test.go.
//
//   {"mode":"keypair"}                                        -> {"public","secret"}
//   {"mode":"seal","node_public","client_secret","plaintext"} -> {"sealed"}: nonce || box
//   {"mode":"open","node_public","client_secret","sealed"}    -> {"plaintext"} or exit 1
//   {"mode":"verify","signed"}                                -> {"ok"}: signed is the JSON text
//   {"mode":"canonical","json"}                               -> {"canonical"}: UTF-8 bytes
'use strict';

const fs = require('fs');
const nacl = require('tweetnacl');
const { canonicalize, verifyReceipt } = require('./canonical.js');

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => new Uint8Array(Buffer.from(h, 'hex'));

function run(cmd) {
  switch (cmd.mode) {
    case 'keypair': {
      const kp = nacl.box.keyPair();
      return { public: hex(kp.publicKey), secret: hex(kp.secretKey) };
    }
    case 'seal': {
      const nonce = nacl.randomBytes(nacl.box.nonceLength);
      const box = nacl.box(bytes(cmd.plaintext), nonce, bytes(cmd.node_public), bytes(cmd.client_secret));
      return { sealed: hex(nonce) + hex(box) };
    }
    case 'open': {
      const sealed = bytes(cmd.sealed);
      const n = nacl.box.nonceLength;
      const plain = nacl.box.open(sealed.subarray(n), sealed.subarray(0, n), bytes(cmd.node_public), bytes(cmd.client_secret));
      if (plain === null) throw new Error('open: message failed authentication');
      return { plaintext: hex(plain) };
    }
    case 'verify':
      return { ok: verifyReceipt(cmd.signed, nacl) !== null };
    case 'canonical':
      return { canonical: hex(new TextEncoder().encode(canonicalize(JSON.parse(cmd.json)))) };
    default:
      throw new Error('unknown mode ' + JSON.stringify(cmd.mode));
  }
}

try {
  process.stdout.write(JSON.stringify(run(JSON.parse(fs.readFileSync(0, 'utf8')))) + '\n');
} catch (e) {
  process.stderr.write('interop: ' + e.message + '\n');
  process.exit(1);
}
