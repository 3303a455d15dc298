package envconfig

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"30s", 30 * time.Second, true},
		{"1h", time.Hour, true},
		{"-5s", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestValueFallsBackToDefault(t *testing.T) {
	t.Setenv(Budget.Name, "")
	if got := Budget.Value(); got != Budget.Default {
		t.Errorf("empty %s gives %q, want the default %q", Budget.Name, got, Budget.Default)
	}
	t.Setenv(Budget.Name, " 42 ")
	if got := Budget.Value(); got != "42" {
		t.Errorf("%s=' 42 ' gives %q", Budget.Name, got)
	}
}
