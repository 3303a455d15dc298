package crypto_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/crypto"
)

func testIdentity(t testing.TB) *crypto.Identity {
	t.Helper()
	id, _, err := crypto.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testReceipt() crypto.Receipt {
	return crypto.Receipt{
		Job:      "job-1",
		Module:   strings.Repeat("ab", 32),
		Stdin:    strings.Repeat("cd", 32),
		Models:   []crypto.ModelHash{{Name: "resnet", SHA256: strings.Repeat("01", 32)}, {Name: "mnist", SHA256: strings.Repeat("02", 32)}},
		Args:     []string{"--top", "5"},
		Backend:  "cpu",
		Device:   "x86-64",
		Mode:     "strict",
		Contract: "1",
		Output:   strings.Repeat("ef", 32),
		Outcome:  "exited",
		ExitCode: 0,
		Units:    "18446744073709551615",
		Issued:   "2025-01-02T03:04:05Z",
	}
}

func signedJSON(t testing.TB, id *crypto.Identity, r crypto.Receipt) []byte {
	t.Helper()
	sr, err := id.SignReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(sr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestReceiptRoundTrip(t *testing.T) {
	id := testIdentity(t)
	in := testReceipt()
	in.Job = "ジョブ <1> & \"quoted\"\n\u2028"
	sr, err := id.SignReceipt(in)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Receipt.Version != 2 || sr.Receipt.GuestUnits != "0" || sr.Receipt.Node != base64.StdEncoding.EncodeToString(id.PublicKey()) {
		t.Fatalf("version %d, node %q", sr.Receipt.Version, sr.Receipt.Node)
	}
	if sr.Receipt.Models[0].Name != "mnist" || in.Models[0].Name != "resnet" {
		t.Fatal("models not sorted, or the caller's slice was")
	}
	data, _ := json.Marshal(sr)
	got, err := crypto.VerifyReceipt(data)
	if err != nil || !reflect.DeepEqual(got, sr) {
		t.Fatalf("VerifyReceipt = %+v, %v", got, err)
	}

	// nil lists are signed and sent as [].
	empty := testReceipt()
	empty.Models, empty.Args, empty.Issued = nil, nil, ""
	data = signedJSON(t, id, empty)
	if !bytes.Contains(data, []byte(`"models":[]`)) || !bytes.Contains(data, []byte(`"args":[]`)) {
		t.Fatalf("nil lists not sent as []: %s", data)
	}
	if got, err := crypto.VerifyReceipt(data); err != nil || got.Receipt.Issued == "" {
		t.Fatalf("VerifyReceipt = %+v, %v", got, err)
	}
}

// The signature covers the receipt's value, not its spelling (RFC 8785):
// other whitespace, key order or escapes still verify.
func TestReceiptRespelled(t *testing.T) {
	id := testIdentity(t)
	r := testReceipt()
	r.Job = "a<b"
	data := signedJSON(t, id, r)
	var v any
	json.Unmarshal(data, &v)
	respelled, _ := json.MarshalIndent(v, "", "   ") // keys sorted, \u003c kept
	respelled = bytes.Replace(respelled, []byte(`\u003c`), []byte(`\u003C`), 1)
	if _, err := crypto.VerifyReceipt(respelled); err != nil {
		t.Fatalf("respelled receipt: %v\n%s", err, respelled)
	}
}

func TestReceiptRefused(t *testing.T) {
	id := testIdentity(t)
	other := testIdentity(t)
	good := string(signedJSON(t, id, testReceipt()))
	sig := func(s string) string {
		var sr crypto.SignedReceipt
		json.Unmarshal([]byte(s), &sr)
		return sr.Signature
	}(good)
	var outer map[string]json.RawMessage
	json.Unmarshal([]byte(good), &outer)
	msg, err := crypto.CanonicalJSON(outer["receipt"])
	if err != nil {
		t.Fatal(err)
	}
	otherSig := base64.StdEncoding.EncodeToString(other.Sign(msg))
	otherNode := base64.StdEncoding.EncodeToString(other.PublicKey())
	node := base64.StdEncoding.EncodeToString(id.PublicKey())
	// lastChar changes only the unused low bits of the signature's last
	// base64 character, which lenient decoders ignore.
	lastChar := sig[:85] + string(sig[85]+1) + "=="

	tests := []struct {
		name string
		data string
		want error
	}{
		{"changed field", strings.Replace(good, `"job":"job-1"`, `"job":"job-2"`, 1), crypto.ErrBadSignature},
		{"other node named", strings.Replace(good, node, otherNode, 1), crypto.ErrBadSignature},
		{"other node signed", strings.Replace(good, sig, otherSig, 1), crypto.ErrBadSignature},
		{"unknown receipt field", strings.Replace(good, `"job":`, `"extra":"unsigned","job":`, 1), crypto.ErrInvalid},
		{"unknown outer field", strings.Replace(good, `"signature":`, `"note":"trust me","signature":`, 1), crypto.ErrInvalid},
		{"missing field", strings.Replace(good, `"args":["--top","5"],`, ``, 1), crypto.ErrInvalid},
		{"null list", strings.Replace(good, `"args":["--top","5"]`, `"args":null`, 1), crypto.ErrInvalid},
		{"key in another case", strings.Replace(good, `"job":`, `"JOB":`, 1), crypto.ErrInvalid},
		{"duplicate key", strings.Replace(good, `"job":"job-1"`, `"job":"job-1","job":"job-2"`, 1), crypto.ErrInvalid},
		{"duplicate outer key", strings.Replace(good, `"signature":`, `"signature":"x","signature":`, 1), crypto.ErrInvalid},
		{"float", strings.Replace(good, `"exit_code":0`, `"exit_code":0.0`, 1), crypto.ErrInvalid},
		{"no signature", strings.Replace(good, `,"signature":"`+sig+`"`, ``, 1), crypto.ErrInvalid},
		{"no receipt", `{"signature":"` + sig + `"}`, crypto.ErrInvalid},
		{"outer key in another case", strings.Replace(good, `"signature":`, `"Signature":`, 1), crypto.ErrInvalid},
		{"signature not a string", strings.Replace(good, `"`+sig+`"`, `["`+sig+`"]`, 1), crypto.ErrInvalid},
		{"null receipt", `{"receipt":null,"signature":"` + sig + `"}`, crypto.ErrInvalid},
		{"signature not base64", strings.Replace(good, sig, "!"+sig[1:], 1), crypto.ErrInvalid},
		{"signature short", strings.Replace(good, sig, sig[:84], 1), crypto.ErrInvalid},
		{"signature unpadded", strings.Replace(good, sig, sig[:86], 1), crypto.ErrInvalid},
		{"signature unused bits set", strings.Replace(good, sig, lastChar, 1), crypto.ErrInvalid},
		{"node not base64", strings.Replace(good, node, "?"+node[1:], 1), crypto.ErrInvalid},
		{"trailing data", good + "{}", crypto.ErrInvalid},
		{"not json", "receipt", crypto.ErrInvalid},
	}
	if _, err := crypto.VerifyReceipt([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.data == good {
				t.Fatal("the case changed nothing")
			}
			if _, err := crypto.VerifyReceipt([]byte(tt.data)); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// Flipping any single bit of a signed receipt makes VerifyReceipt fail.
// The receipt holds nothing encoding/json writes as a \u escape: flipping
// the case of a hex digit there would respell, not change, the value.
func TestReceiptBitFlip(t *testing.T) {
	id := testIdentity(t)
	data := signedJSON(t, id, testReceipt())
	bits := len(data) * 8
	positions := make([]int, 0, bits)
	if testing.Short() {
		for range 2000 {
			positions = append(positions, rand.IntN(bits))
		}
	} else {
		for bit := range bits {
			positions = append(positions, bit)
		}
	}
	for _, bit := range positions {
		m := bytes.Clone(data)
		m[bit/8] ^= 1 << (bit % 8)
		if _, err := crypto.VerifyReceipt(m); err == nil {
			t.Fatalf("bit %d flipped, still verifies:\n%s", bit, m)
		}
	}
}

// Version 2 added guest_units. A version 1 receipt, which has none, still
// verifies; a receipt whose version and guest_units disagree does not,
// even correctly signed.
func TestReceiptVersions(t *testing.T) {
	id := testIdentity(t)
	signAs := func(t *testing.T, version int, guestUnits string) []byte {
		r := testReceipt()
		r.Version, r.GuestUnits = version, guestUnits
		r.Node = base64.StdEncoding.EncodeToString(id.PublicKey())
		msg, err := crypto.Canonical(r)
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(crypto.SignedReceipt{Receipt: r, Signature: base64.StdEncoding.EncodeToString(id.Sign(msg))})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name       string
		version    int
		guestUnits string
		want       error
	}{
		{"version 1 without guest units", 1, "", nil},
		{"version 2 with guest units", 2, "12345", nil},
		{"version 1 with guest units", 1, "12345", crypto.ErrInvalid},
		{"version 2 without guest units", 2, "", crypto.ErrInvalid},
		{"version 3", 3, "1", crypto.ErrInvalid},
		{"version 0", 0, "", crypto.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, err := crypto.VerifyReceipt(signAs(t, tt.version, tt.guestUnits))
			if !errors.Is(err, tt.want) || (err == nil && sr.Receipt.GuestUnits != tt.guestUnits) {
				t.Fatalf("got %v (guest units %q), want %v", err, sr.Receipt.GuestUnits, tt.want)
			}
		})
	}
}
