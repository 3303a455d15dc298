package hostfn_test

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
)

func sampleState() *hostfn.State {
	return &hostfn.State{
		Reactor: &engine.Snapshot{
			Pages:   3,
			Memory:  []engine.Segment{{Offset: 0, Data: []byte{1, 2, 3}}, {Offset: 70000, Data: []byte{9}}},
			Globals: []uint64{65536, 1<<64 - 1},
		},
		Tensors: []hostfn.SavedTensor{
			{Handle: 2, DType: accel.F32, Shape: []int{2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64}},
			{Handle: 5, DType: accel.I32, Shape: []int{1, 1}, Data: []byte{7, 0, 0, 0}},
		},
		NextHandle: 6,
		Models:     []hostfn.SavedModel{{Handle: 1, SHA256: strings.Repeat("ab", 32)}},
		NextModel:  2,
	}
}

func TestStateRoundTrip(t *testing.T) {
	for _, st := range []*hostfn.State{sampleState(), {Reactor: &engine.Snapshot{}, NextHandle: 1, NextModel: 1}} {
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got hostfn.State
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		again, err := got.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(b) {
			t.Error("encoding the decoded state gives other bytes")
		}
		if !reflect.DeepEqual(got.Reactor, st.Reactor) || got.NextHandle != st.NextHandle || got.NextModel != st.NextModel ||
			len(got.Tensors) != len(st.Tensors) || !reflect.DeepEqual(got.Models, st.Models) {
			t.Errorf("decoded %+v, want %+v", got, st)
		}
		for i := range got.Tensors {
			g, w := got.Tensors[i], st.Tensors[i]
			if g.Handle != w.Handle || g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || string(g.Data) != string(w.Data) {
				t.Errorf("tensor %d: %+v, want %+v", i, g, w)
			}
		}
	}
}

func TestStateRefuses(t *testing.T) {
	good, err := sampleState().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	put := func(at int, v uint32) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(b[at:], v)
		return b
	}
	// Offsets in the sample's encoding: version 0, pages 4, globals 8..28,
	// segments 28: the first at 32, the second at 43.
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version", put(0, 2), "version 2"},
		{"truncated", good[:len(good)-1], "do not fit"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "after the end"},
		{"segment outside memory", put(4, 1), "outside 1 pages"},
		{"segments out of order", put(43, 1), "out of order"},
		{"huge count", put(8, 1<<30), "do not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st hostfn.State
			if err := st.UnmarshalBinary(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	bad := sampleState()
	bad.Tensors[0].Data = bad.Tensors[0].Data[:4]
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("a tensor with bytes missing was encoded")
	}
}
