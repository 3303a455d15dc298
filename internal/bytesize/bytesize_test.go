package bytesize

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"65536", 65536, true},
		{"64KiB", 64 << 10, true},
		{"256MiB", 256 << 20, true},
		{"1GiB", 1 << 30, true},
		{" 2 GiB ", 2 << 30, true},
		{"10B", 10, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1GiB", 0, false},
		{"1.5GiB", 0, false},
		{"NaN", 0, false},
		{"99999999999TiB", 0, false}, // would overflow int64
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFormatRoundTrips(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{1000, "1000B"},
		{64 << 10, "64KiB"},
		{64<<20 + 64<<10, "65600KiB"},
		{1 << 30, "1GiB"},
		{4<<30 - 64<<10, "4194240KiB"},
		{3 << 40, "3TiB"},
	}
	for _, tc := range tests {
		got := Format(tc.n)
		if got != tc.want {
			t.Errorf("Format(%d) = %q, want %q", tc.n, got, tc.want)
		}
		if back, err := Parse(got); err != nil || back != tc.n {
			t.Errorf("Parse(Format(%d)) = %d, %v", tc.n, back, err)
		}
	}
}
