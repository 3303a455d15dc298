package hostfn

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/hostfn/abi"
)

// TestActorImports checks call_input and call_reply against docs/abi.md:
// their errnos, the length call_input writes, and the reply kept.
func TestActorImports(t *testing.T) {
	const buf, lenAt = 0x100, 0x40 // in a page of guest memory
	payload := []byte("twelve bytes")
	tests := []struct {
		name      string
		fn        string
		inCall    bool
		args      []uint32
		want      abi.Errno
		wantLen   uint32 // written at lenAt, for call_input
		wantReply []byte // for call_reply
	}{
		{"input outside a call", "call_input", false, []uint32{buf, 64, lenAt}, abi.EUNSUPPORTED, 0, nil},
		{"reply outside a call", "call_reply", false, []uint32{buf, 4}, abi.EUNSUPPORTED, 0, nil},
		{"input", "call_input", true, []uint32{buf, 64, lenAt}, abi.OK, 12, nil},
		{"input exactly fits", "call_input", true, []uint32{buf, 12, lenAt}, abi.OK, 12, nil},
		{"input too small", "call_input", true, []uint32{buf, 11, lenAt}, abi.ETOOSMALL, 12, nil},
		{"input length outside memory", "call_input", true, []uint32{buf, 64, pageBytes - 2}, abi.EFAULT, 0, nil},
		{"input buffer outside memory", "call_input", true, []uint32{pageBytes - 4, 64, lenAt}, abi.EFAULT, 0, nil},
		{"reply", "call_reply", true, []uint32{buf, 5}, abi.OK, 0, []byte("twelv")},
		{"empty reply", "call_reply", true, []uint32{buf, 0}, abi.OK, 0, []byte{}},
		{"reply outside memory", "call_reply", true, []uint32{pageBytes - 2, 4}, abi.EFAULT, 0, nil},
		{"reply over the limit", "call_reply", true, []uint32{0, MaxReply + 1}, abi.ELIMIT, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := NewInstance(Config{Backend: ref.New(1), Mode: accel.Strict})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			mem := &fuzzMemory{buf: make([]byte, pageBytes)}
			copy(mem.buf[buf:], payload)
			var call *actorCall
			if tt.inCall {
				call = &actorCall{input: payload}
				in.actor = call
			}
			var fn function
			for _, f := range functions {
				if f.name == tt.fn {
					fn = f
				}
			}
			stack := make([]uint64, len(fn.params))
			for i, v := range tt.args {
				stack[i] = api.EncodeU32(v)
			}
			if e := in.dispatch(context.Background(), fn, mem, stack); e != tt.want {
				t.Fatalf("errno %d (%s), want %d", e, in.lastErr, tt.want)
			}
			if tt.want != abi.OK && !bytes.HasPrefix([]byte(in.lastErr), []byte(tt.fn+": ")) {
				t.Errorf("last_error %q does not name %s", in.lastErr, tt.fn)
			}
			if got := binary.LittleEndian.Uint32(mem.buf[lenAt:]); got != tt.wantLen {
				t.Errorf("length written %d, want %d", got, tt.wantLen)
			}
			if tt.fn == "call_input" && tt.want == abi.OK && !bytes.Equal(mem.buf[buf:buf+12], payload) {
				t.Errorf("buffer holds %q", mem.buf[buf:buf+12])
			}
			if tt.wantReply != nil && !bytes.Equal(call.reply, tt.wantReply) {
				t.Errorf("reply %q, want %q", call.reply, tt.wantReply)
			}
		})
	}
}
