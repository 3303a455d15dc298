package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/server/servertest"
)

// TestReceiptCommands fetches a job's receipt, verifies it, and refuses it
// once a byte changed or when another node is named as its signer.
func TestReceiptCommands(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	digest := guesttest.Path(t, digestGuest)
	stdout, _, err := accelnode(t, "submit", "--node", srv.URL, digest)
	job := strings.TrimSpace(stdout)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := accelnode(t, "job", "--node", srv.URL, "--wait", job); err != nil {
		t.Fatal(err)
	}
	receipt, _, err := accelnode(t, "receipt", "get", "--node", srv.URL, job)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "receipt.json")
	os.WriteFile(file, []byte(receipt), 0o644)
	id, _, err := crypto.LoadOrCreateIdentity(srv.Dir)
	if err != nil {
		t.Fatal(err)
	}

	out, stderr, err := accelnode(t, "receipt", "verify", "--node", id.Fingerprint(), file)
	if err != nil || !strings.Contains(out, "good, by the node "+id.Fingerprint()) || !strings.Contains(out, job) {
		t.Fatalf("verify: %v\n%s%s", err, out, stderr)
	}
	other, _ := crypto.NewIdentity()
	_, stderr, err = accelnode(t, "receipt", "verify", "--node", other.Fingerprint(), file)
	if e := (exitError{}); !errors.As(err, &e) || e.code != exitFailed || !strings.Contains(stderr, "not by "+other.Fingerprint()) {
		t.Errorf("verify naming another node: %v %s", err, stderr)
	}
	tampered := strings.Replace(receipt, `"exit_code": 0`, `"exit_code": 1`, 1)
	if tampered == receipt {
		t.Fatalf("no exit code in %s", receipt)
	}
	os.WriteFile(file, []byte(tampered), 0o644)
	_, stderr, err = accelnode(t, "receipt", "verify", file)
	if e := (exitError{}); !errors.As(err, &e) || e.code != exitFailed || !strings.Contains(stderr, "signature") {
		t.Errorf("verify a tampered receipt: %v %s", err, stderr)
	}
	if _, _, err := accelnode(t, "receipt", "verify", filepath.Join(t.TempDir(), "none.json")); !errors.As(err, new(exitError)) {
		t.Errorf("verify a missing file: %v", err)
	}
}

// TestSubmitReplicas runs one strict job on nodes on ref and ref-portable,
// which agree; and, where ONNX Runtime serves, a fast job beside a node on
// ort, which is reported as differing exactly when its output hash does.
func TestSubmitReplicas(t *testing.T) {
	digest := guesttest.Path(t, digestGuest)
	a := servertest.Start(t, servertest.Options{Backend: "ref"}).URL
	b := servertest.Start(t, servertest.Options{Backend: "ref-portable"}).URL
	out, stderr, err := accelnode(t, "submit", "--replicas", a+","+b, digest)
	if err != nil || !strings.Contains(out, "all 2 nodes agree") || strings.Contains(out, "DIFFERS") {
		t.Fatalf("replicas on ref and ref-portable: %v\n%s%s", err, out, stderr)
	}

	t.Run("ort fast", func(t *testing.T) {
		ortAvailable(t)
		c := servertest.Start(t, servertest.Options{Backend: "ort", Mode: accel.Fast}).URL
		out, stderr, err := accelnode(t, "submit", "--mode", "fast", "--replicas", a+","+b+","+c, digest)
		hashes := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 7 && strings.HasPrefix(f[0], "http") {
				hashes[f[0]] = f[6]
			}
		}
		if len(hashes) != 3 {
			t.Fatalf("want a row per node:\n%s%s", out, stderr)
		}
		differs := hashes[c] != hashes[a]
		var e exitError
		if differs != (errors.As(err, &e) && e.code == exitFailed) || differs != strings.Contains(out, "DIFFERS") {
			t.Errorf("ort's output %s beside ref's %s: err %v\n%s", hashes[c], hashes[a], err, out)
		}
		t.Logf("ort in fast mode differs from ref: %v\n%s", differs, out)
	})
}
