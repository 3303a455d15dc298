// Package crypto gives the node encrypted sessions, an Ed25519 identity and
// signed receipts, each in a form a browser checks with tweetnacl-js alone.
//
// Sessions are NaCl box (X25519, XSalsa20-Poly1305). The client sends its
// public key, the node answers with a fresh per-session public key, and both
// sides then use the one shared key that box.Precompute derives. A message on
// the wire is a 24-byte nonce followed by the box ciphertext, which is what
// nacl.box returns once its nonce is put in front.
//
// Because the key is the same in both directions, a node response would
// authenticate as a request. The node therefore remembers every nonce it has
// seen or used in a session and refuses a second use (ErrReplay), until the
// session ends. Only messages that authenticate consume their nonce, so a
// forger cannot burn nonces a client has yet to use. Clients should keep
// their own set too, or a request can be reflected back to them as a response.
//
// Keys are wiped on End, on expiry and on Close: the shared key is
// overwritten with zeros, and the node's private key is overwritten as soon
// as the shared key is derived. Go cannot promise more than that: the runtime
// and the garbage collector may have copied key bytes (stacks are moved,
// registers spilled, temporaries in x/crypto left behind), memory is not
// locked against swap, and plaintexts returned to callers are theirs to
// handle.
//
// The identity is an Ed25519 key kept in dir/node.key as PKCS#8 PEM, mode
// 0600. It is created once and never rewritten; a file that cannot be read as
// such a key stops the node.
//
// Receipts are signed over their RFC 8785 (JCS) canonical JSON, restricted to
// integers of at most 2^53 in magnitude, so that JSON.stringify over sorted
// keys reproduces the signed bytes in a browser (see interop/canonical.js).
package crypto
