package crypto_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/accelnode/accelnode/crypto"
)

// node runs one interop.js command: tweetnacl-js, as a browser uses it.
func node(t *testing.T, cmd map[string]any) map[string]any {
	t.Helper()
	in, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "node", "interop/interop.js")
	c.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("node %s: %v: %s", cmd["mode"], err, stderr.Bytes())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node %s printed %q: %v", cmd["mode"], out, err)
	}
	return res
}

func unhex(t *testing.T, v any) []byte {
	t.Helper()
	b, err := hex.DecodeString(v.(string))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInterop(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	if _, err := os.Stat("interop/node_modules/tweetnacl"); err != nil {
		t.Skip("tweetnacl is not in crypto/interop/node_modules; run make deps")
	}

	s := crypto.NewSessions(crypto.SessionsConfig{})
	defer s.Close()
	kp := node(t, map[string]any{"mode": "keypair"})
	clientPub := [32]byte(unhex(t, kp["public"]))
	sess, err := s.Create("key-a", clientPub, 0)
	if err != nil {
		t.Fatal(err)
	}
	nodePub := hex.EncodeToString(sess.NodePublicKey[:])
	msg := []byte("tweetnacl ✓ \x00\xff")

	t.Run("go seals, js opens", func(t *testing.T) {
		sealed, err := s.Seal("key-a", sess.ID, msg)
		if err != nil {
			t.Fatal(err)
		}
		res := node(t, map[string]any{"mode": "open", "node_public": nodePub, "client_secret": kp["secret"], "sealed": hex.EncodeToString(sealed)})
		if got := unhex(t, res["plaintext"]); !bytes.Equal(got, msg) {
			t.Fatalf("js opened %q, want %q", got, msg)
		}
	})

	t.Run("js seals, go opens", func(t *testing.T) {
		res := node(t, map[string]any{"mode": "seal", "node_public": nodePub, "client_secret": kp["secret"], "plaintext": hex.EncodeToString(msg)})
		got, err := s.Open("key-a", sess.ID, unhex(t, res["sealed"]))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("go opened %q, %v; want %q", got, err, msg)
		}
	})

	id := testIdentity(t)
	r := testReceipt()
	r.Job = "ジョブ <1> & \"q\" \\ \n\t\x01\x7f \u2028 😀 \ufb33"
	r.Args = []string{"é", "\u0080", "\r", "1", ""}
	r.Models = []crypto.ModelHash{{Name: "€", SHA256: "aa"}, {Name: "😀", SHA256: "bb"}, {Name: "\ufb33", SHA256: "cc"}}

	t.Run("js verifies go's receipt", func(t *testing.T) {
		good := signedJSON(t, id, r)
		if res := node(t, map[string]any{"mode": "verify", "signed": string(good)}); res["ok"] != true {
			t.Fatalf("js refused a good receipt: %v", res)
		}
		bad := bytes.Replace(good, []byte(`"exit_code":0`), []byte(`"exit_code":1`), 1)
		if res := node(t, map[string]any{"mode": "verify", "signed": string(bad)}); res["ok"] != false {
			t.Fatalf("js accepted a tampered receipt: %v", res)
		}
	})

	t.Run("js canonical bytes are go's", func(t *testing.T) {
		values := []any{
			r,
			// RFC 8785 section 3.2.3: UTF-16 key order.
			map[string]string{"€": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Dalet", "1": "One", "😀": "Emoji", "\u0080": "Control", "ö": "o"},
			[]any{nil, true, false, 0, -9007199254740992, 9007199254740992, "\x00\x1f\"\\/"},
		}
		for _, v := range values {
			want, err := crypto.Canonical(v)
			if err != nil {
				t.Fatal(err)
			}
			text, _ := json.Marshal(v) // \u003c and the like, which js must undo
			res := node(t, map[string]any{"mode": "canonical", "json": string(text)})
			if got := unhex(t, res["canonical"]); !bytes.Equal(got, want) {
				t.Fatalf("js canonical differs:\njs %s\ngo %s", got, want)
			}
		}
	})
}
