package engine

import "testing"

func TestMinMemoryPages(t *testing.T) {
	header := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	tests := []struct {
		name    string
		body    []byte
		pages   uint32
		has     bool
		wantErr bool
	}{
		{name: "no memory"},
		{
			// (module (memory 300))
			name:  "memory section",
			body:  []byte{0x05, 0x04, 0x01, 0x00, 0xac, 0x02},
			pages: 300, has: true,
		},
		{
			// (module (memory 2 10))
			name:  "memory with maximum",
			body:  []byte{0x05, 0x04, 0x01, 0x01, 0x02, 0x0a},
			pages: 2, has: true,
		},
		{
			// (module (import "env" "memory" (memory 5)))
			name: "imported memory",
			body: []byte{0x02, 0x0f, 0x01,
				0x03, 'e', 'n', 'v', 0x06, 'm', 'e', 'm', 'o', 'r', 'y',
				0x02, 0x00, 0x05},
			pages: 5, has: true,
		},
		{
			// (module (type (func)) (import "m" "f" (func (type 0))) (memory 7))
			name: "memory after imported function",
			body: []byte{0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
				0x02, 0x07, 0x01, 0x01, 'm', 0x01, 'f', 0x00, 0x00,
				0x05, 0x03, 0x01, 0x00, 0x07},
			pages: 7, has: true,
		},
		{name: "truncated section", body: []byte{0x05, 0x04, 0x01}, wantErr: true},
		{name: "truncated limits", body: []byte{0x05, 0x02, 0x01, 0x00}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages, has, err := minMemoryPages(append(header[:8:8], tt.body...))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if pages != tt.pages || has != tt.has {
				t.Errorf("got (%d, %v), want (%d, %v)", pages, has, tt.pages, tt.has)
			}
		})
	}
	if _, _, err := minMemoryPages([]byte("garbage!")); err == nil {
		t.Error("garbage: no error")
	}
}
