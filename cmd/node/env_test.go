package main

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
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestValueFallsBackToDefault(t *testing.T) {
	t.Setenv(env.Budget.Name, "")
	if got := env.Budget.Value(); got != env.Budget.Default {
		t.Errorf("empty %s gives %q, want the default %q", env.Budget.Name, got, env.Budget.Default)
	}
	t.Setenv(env.Budget.Name, " 42 ")
	if got := env.Budget.Value(); got != "42" {
		t.Errorf("%s=' 42 ' gives %q", env.Budget.Name, got)
	}
}
