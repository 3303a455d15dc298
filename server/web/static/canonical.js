// Canonical JSON (RFC 8785) as the node signs receipts: no whitespace,
// object keys sorted by UTF-16 code units, strings as JSON.stringify writes
// them. Numbers must be integers of magnitude at most 2^53; the node signs
// no others. A web page may copy this file as it is.
'use strict';

function canonicalize(value) {
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isInteger(value) || Math.abs(value) > 2 ** 53) {
        throw new Error('canonical JSON: number ' + value + ' is not an integer of magnitude at most 2^53');
      }
      return JSON.stringify(value); // -0 becomes 0
    case 'object':
      if (value === null) return 'null';
      if (Array.isArray(value)) return '[' + value.map(canonicalize).join(',') + ']';
      // sort() without a comparator compares UTF-16 code units, as RFC 8785 asks.
      return '{' + Object.keys(value).sort()
        .map((k) => JSON.stringify(k) + ':' + canonicalize(value[k])).join(',') + '}';
    default:
      throw new Error('canonical JSON: cannot encode ' + typeof value);
  }
}

// verifyReceipt checks a SignedReceipt's signature with tweetnacl's nacl and
// returns the receipt, or null. It says who signed, not whether to trust
// them: compare receipt.node with the node key you expect. JSON.parse keeps
// the last of duplicate keys, which the node refuses; verify the node's own
// output, not text from elsewhere.
function verifyReceipt(signedText, nacl) {
  try {
    const signed = JSON.parse(signedText);
    const message = new TextEncoder().encode(canonicalize(signed.receipt));
    const fromBase64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const ok = nacl.sign.detached.verify(message, fromBase64(signed.signature), fromBase64(signed.receipt.node));
    return ok ? signed.receipt : null;
  } catch (e) {
    return null; // malformed JSON, base64 or key and signature sizes
  }
}

if (typeof module !== 'undefined') module.exports = { canonicalize, verifyReceipt };
