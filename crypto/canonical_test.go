package crypto_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/crypto"
)

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// RFC 8785 section 3.2.3: keys sorted by UTF-16 code units, so the
		// emoji (D83D DE00) sorts before U+FB33, unlike in code point order.
		{"rfc8785 sorting",
			`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		// RFC 8785 section 3.2.2.2.
		{"rfc8785 string", `"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"`, `"€$\u000f\nA'B\"\\\\\"/"`},
		// RFC 8785 section 3.2.4 less its floats, which we do not sign.
		{"rfc8785 example", "{\n  \"literals\": [null, true, false],\n  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\"\n}",
			`{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"nested and empty", ` { "b" : [ {} , [ ] , { "d":1 , "c":2 } ] , "a" : "" } `, `{"a":"","b":[{},[],{"c":2,"d":1}]}`},
		{"short escapes", `"\b\f\n\r\t\"\\"`, `"\b\f\n\r\t\"\\"`},
		{"other controls lowercase", `"\u0000\u0001\u001F\u007f"`, "\"\\u0000\\u0001\\u001f\x7f\""},
		{"no html or separator escapes", `"\u003c\u003e\u0026\u2028\u2029"`, "\"<>&\u2028\u2029\""},
		{"escaped backslash before u", `"\\ud800"`, `"\\ud800"`},
		{"integers", `[0,-0,1,-1,9007199254740992,-9007199254740992]`, `[0,0,1,-1,9007199254740992,-9007199254740992]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := crypto.CanonicalJSON([]byte(tt.in))
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %s, %v\nwant %s", got, err, tt.want)
			}
		})
	}
}

func TestCanonicalJSONRefuses(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"empty", ``},
		{"syntax", `{"a":}`},
		{"unclosed", `[1,2`},
		{"trailing data", `{} {}`},
		{"duplicate key", `{"a":1,"a":2}`},
		{"duplicate after unescaping", `{"a":1,"\u0061":2}`},
		{"nested duplicate", `[{"x":{"k":1,"k":1}}]`},
		{"fraction", `1.5`},
		{"integral fraction", `1.0`},
		{"exponent", `1e2`},
		{"above 2^53", `9007199254740993`},
		{"below -2^53", `-9007199254740993`},
		{"beyond int64", `123456789012345678901234567890`},
		{"rfc8785 floats", `{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001]}`},
		{"lone high surrogate", `"\ud800"`},
		{"lone low surrogate", `"\udc00"`},
		{"high then not low", `"\ud800\u0041"`},
		{"high at end", `"x\uD800"`},
		{"invalid utf-8", "\"\xff\""},
		{"deep", strings.Repeat("[", 1002) + strings.Repeat("]", 1002)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := crypto.CanonicalJSON([]byte(tt.in))
			if !errors.Is(err, crypto.ErrInvalid) {
				t.Fatalf("got %s, %v; want ErrInvalid", got, err)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	type inner struct {
		Z string `json:"z"`
		A []int  `json:"a"`
	}
	tests := []struct {
		name string
		in   any
		want string // "" means ErrInvalid
	}{
		{"struct by tags", inner{Z: "<&>", A: []int{3, 1}}, `{"a":[3,1],"z":"<&>"}`},
		{"nil slice is null", inner{}, `{"a":null,"z":""}`},
		{"map", map[string]any{"b": true, "a": nil, "é": "\u2028"}, "{\"a\":null,\"b\":true,\"é\":\"\u2028\"}"},
		{"integral float", 3.0, `3`},
		{"2^53", uint64(1 << 53), `9007199254740992`},
		{"above 2^53", uint64(1<<53 + 1), ""},
		{"float", 0.5, ""},
		{"invalid utf-8 value", map[string]string{"a": "\xff"}, ""},
		{"invalid utf-8 key", map[string]int{"\xfe": 1}, ""},
		{"invalid utf-8 in struct", inner{Z: "ok\xc3"}, ""},
		{"unsupported", func() {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := crypto.Canonical(tt.in)
			if tt.want == "" {
				if !errors.Is(err, crypto.ErrInvalid) {
					t.Fatalf("got %s, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
			// Canonical is CanonicalJSON of what encoding/json writes.
			raw, _ := json.Marshal(tt.in)
			if again, err := crypto.CanonicalJSON(raw); err != nil || string(again) != string(got) {
				t.Fatalf("CanonicalJSON(json.Marshal) = %s, %v", again, err)
			}
		})
	}
}
