package crypto

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrBadSignature is returned by VerifyReceipt when the signature does not
// match the receipt and its node key.
var ErrBadSignature = errors.New("bad signature")

// ReceiptVersion is the only Receipt.Version this package signs. Version 2
// added guest_units; VerifyReceipt still accepts version 1 receipts, which
// have none.
const ReceiptVersion = 2

// Receipt records what a job ran and what it produced. Hashes are lowercase
// hex SHA-256.
type Receipt struct {
	Version  int         `json:"version"`       // 2 (1: without guest_units)
	Node     string      `json:"node"`          // standard padded base64 of the node's Ed25519 public key
	Job      string      `json:"job"`           // the node's job id
	Module   string      `json:"module_sha256"` // the guest module
	Stdin    string      `json:"stdin_sha256"`  // the guest's input
	Models   []ModelHash `json:"models"`        // every model the job named, sorted by name
	Args     []string    `json:"args"`
	Backend  string      `json:"backend"`
	Device   string      `json:"device"`
	Mode     string      `json:"mode"`     // strict, fast or checked
	Contract string      `json:"contract"` // numerics-contract version
	Output   string      `json:"stdout_sha256"`
	Outcome  string      `json:"outcome"`
	ExitCode uint32      `json:"exit_code"`
	Units    string      `json:"units"` // decimal: a uint64 exceeds JSON's exact integers
	// GuestUnits are the units of the guest's own instructions, decimal;
	// part of Units where the guest ran under strict guest determinism.
	GuestUnits string `json:"guest_units,omitempty"`
	Issued     string `json:"issued_at"` // RFC 3339, UTC, whole seconds
}

// ModelHash names a model and the SHA-256 of its bytes.
type ModelHash struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// SignedReceipt is a receipt and the Ed25519 signature, in standard padded
// base64, of its canonical JSON (see Canonical).
type SignedReceipt struct {
	Receipt   Receipt `json:"receipt"`
	Signature string  `json:"signature"`
}

// SignReceipt signs r as this node. It sets Node, Version if zero, Issued if
// empty, sorts Models by name, and turns nil Models and Args into empty
// lists, so that the receipt encodes as it was signed.
func (id *Identity) SignReceipt(r Receipt) (SignedReceipt, error) {
	if r.Version == 0 {
		r.Version = ReceiptVersion
	}
	if r.Version != ReceiptVersion {
		return SignedReceipt{}, fmt.Errorf("%w: receipt version %d, want %d", ErrInvalid, r.Version, ReceiptVersion)
	}
	if r.GuestUnits == "" {
		r.GuestUnits = "0"
	}
	r.Node = base64.StdEncoding.EncodeToString(id.PublicKey())
	if r.Issued == "" {
		r.Issued = time.Now().UTC().Format(time.RFC3339)
	}
	r.Models = slices.Clone(r.Models) // sorting must not reorder the caller's slice
	if r.Models == nil {
		r.Models = []ModelHash{}
	}
	slices.SortStableFunc(r.Models, func(a, b ModelHash) int { return cmp.Compare(a.Name, b.Name) })
	if r.Args == nil {
		r.Args = []string{}
	}
	msg, err := Canonical(r)
	if err != nil {
		return SignedReceipt{}, fmt.Errorf("receipt: %w", err)
	}
	return SignedReceipt{Receipt: r, Signature: base64.StdEncoding.EncodeToString(id.Sign(msg))}, nil
}

// VerifyReceipt parses a SignedReceipt and checks its signature against the
// node key the receipt names. The signed bytes are recomputed from the
// receipt as received, and the receipt must be exactly what the Receipt
// type holds, so that nothing unsigned is shown as signed and nothing
// signed is hidden. Malformed input is ErrInvalid, a wrong signature
// ErrBadSignature. It says who signed, not whether to trust them: compare
// Receipt.Node with the key you expect.
func VerifyReceipt(data []byte) (SignedReceipt, error) {
	// Refuses duplicate keys anywhere, which parsers resolve differently.
	if _, err := CanonicalJSON(data); err != nil {
		return SignedReceipt{}, fmt.Errorf("receipt: %w", err)
	}
	// A map, not a struct: encoding/json matches struct fields in any case.
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(data, &outer); err != nil {
		return SignedReceipt{}, fmt.Errorf("%w: signed receipt: %v", ErrInvalid, err)
	}
	var sigText string
	if err := json.Unmarshal(outer["signature"], &sigText); err != nil || len(outer) != 2 || outer["receipt"] == nil {
		return SignedReceipt{}, fmt.Errorf("%w: signed receipt must hold exactly \"receipt\" and the string \"signature\"", ErrInvalid)
	}
	signed, err := CanonicalJSON(outer["receipt"])
	if err != nil {
		return SignedReceipt{}, fmt.Errorf("receipt: %w", err)
	}
	var r Receipt
	dec := json.NewDecoder(bytes.NewReader(outer["receipt"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return SignedReceipt{}, fmt.Errorf("%w: receipt: %v", ErrInvalid, err)
	}
	// Catches what Decode forgives: missing fields, keys in another case,
	// and null for the lists, which a node signs as [].
	again, err := Canonical(r)
	if err != nil || !bytes.Equal(again, signed) || r.Models == nil || r.Args == nil {
		return SignedReceipt{}, fmt.Errorf("%w: receipt fields differ from those a node signs", ErrInvalid)
	}
	if (r.Version == 1) != (r.GuestUnits == "") || r.Version < 1 || r.Version > ReceiptVersion {
		return SignedReceipt{}, fmt.Errorf("%w: receipt version %d with guest_units %q", ErrInvalid, r.Version, r.GuestUnits)
	}
	pub, err := decodeBase64(r.Node, ed25519.PublicKeySize)
	if err != nil {
		return SignedReceipt{}, fmt.Errorf("%w: receipt node key: %v", ErrInvalid, err)
	}
	sig, err := decodeBase64(sigText, ed25519.SignatureSize)
	if err != nil {
		return SignedReceipt{}, fmt.Errorf("%w: receipt signature: %v", ErrInvalid, err)
	}
	if !ed25519.Verify(pub, signed, sig) {
		return SignedReceipt{}, ErrBadSignature
	}
	return SignedReceipt{Receipt: r, Signature: sigText}, nil
}

// decodeBase64 decodes standard padded base64 of n bytes, refusing any
// other spelling of them, so that no two strings carry the same key or
// signature.
func decodeBase64(s string, n int) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) != n || base64.StdEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("want %d bytes in standard padded base64", n)
	}
	return b, nil
}
