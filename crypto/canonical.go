package crypto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting; a receipt is three levels deep.
const maxDepth = 1000

// maxSafeInt is 2^53, the largest magnitude below which every integer is
// exactly a JSON number in ECMAScript.
const maxSafeInt = 1 << 53

// Canonical returns the RFC 8785 (JCS) form of v as encoding/json would
// encode it: objects with keys sorted by UTF-16 code units, no whitespace,
// strings escaped as ECMAScript's JSON.stringify does. Numbers must be
// integers of magnitude at most 2^53. Invalid UTF-8 is refused (ErrInvalid)
// instead of being replaced, as encoding/json would, by U+FFFD.
func Canonical(v any) ([]byte, error) {
	if err := checkUTF8(reflect.ValueOf(v), 0); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return CanonicalJSON(raw)
}

// CanonicalJSON parses one JSON value and returns its RFC 8785 form, under
// the rules of Canonical. Duplicate keys, lone surrogate escapes, invalid
// UTF-8 and numbers written with a fraction or exponent are refused
// (ErrInvalid): each would let two readers see different values.
func CanonicalJSON(raw []byte) ([]byte, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: json is not UTF-8", ErrInvalid)
	}
	if err := checkSurrogates(raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonValue(dec, &out, 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: json: data after the value", ErrInvalid)
	}
	return out.Bytes(), nil
}

func canonValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: json nested deeper than %d", ErrInvalid, maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: json: %v", ErrInvalid, err)
	}
	switch t := tok.(type) {
	case nil:
		out.WriteString("null")
	case bool:
		out.WriteString(strconv.FormatBool(t))
	case json.Number:
		return writeNumber(out, t)
	case string:
		writeString(out, t)
	case json.Delim:
		if t == '[' {
			return canonArray(dec, out, depth)
		}
		return canonObject(dec, out, depth) // the decoder yields no other opening delimiter
	}
	return nil
}

func canonArray(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	out.WriteByte('[')
	for i := 0; dec.More(); i++ {
		if i > 0 {
			out.WriteByte(',')
		}
		if err := canonValue(dec, out, depth+1); err != nil {
			return err
		}
	}
	out.WriteByte(']')
	if _, err := dec.Token(); err != nil { // ']'
		return fmt.Errorf("%w: json: %v", ErrInvalid, err)
	}
	return nil
}

func canonObject(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	type member struct {
		key   string
		key16 []uint16
		value []byte
	}
	var members []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: json: %v", ErrInvalid, err)
		}
		key := tok.(string) // the decoder yields only strings as keys
		if seen[key] {
			return fmt.Errorf("%w: json: duplicate key %q", ErrInvalid, key)
		}
		seen[key] = true
		var v bytes.Buffer
		if err := canonValue(dec, &v, depth+1); err != nil {
			return err
		}
		members = append(members, member{key, utf16.Encode([]rune(key)), v.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("%w: json: %v", ErrInvalid, err)
	}
	// UTF-16 order differs from Go's byte order for keys mixing
	// U+E000..U+FFFF with characters beyond U+FFFF.
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.key16, b.key16) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

// writeNumber writes an integer in its shortest form. Fractions and
// exponents are refused even when integral: we never sign floats, and
// refusing them keeps decimal rounding out of what is signed.
func writeNumber(out *bytes.Buffer, n json.Number) error {
	s := n.String()
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strings.ContainsAny(s, ".eE") || i > maxSafeInt || i < -maxSafeInt {
		return fmt.Errorf("%w: json number %s is not an integer of magnitude at most 2^53", ErrInvalid, s)
	}
	out.WriteString(strconv.FormatInt(i, 10)) // "-0" becomes "0"
	return nil
}

// writeString quotes s as ECMAScript's JSON.stringify does: only '"', '\\'
// and control characters are escaped, everything else is literal UTF-8.
func writeString(out *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	out.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if c < 0x20 {
				out.WriteString(`\u00`)
				out.WriteByte(hexDigits[c>>4])
				out.WriteByte(hexDigits[c&0xf])
			} else {
				out.WriteByte(c)
			}
		}
	}
	out.WriteByte('"')
}

// checkSurrogates refuses \u escapes of lone UTF-16 surrogates, which
// encoding/json silently turns into U+FFFD. Outside strings a backslash is
// a syntax error the decoder reports, so every backslash here is in one.
func checkSurrogates(raw []byte) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		switch r := escapedRune(raw[i:]); {
		case r < 0: // not a \u escape
			i++ // skip the escaped character, which may be a backslash
		case r >= 0xd800 && r < 0xdc00: // high surrogate: a low one must follow
			if lo := escapedRune(raw[i+6:]); lo < 0xdc00 || lo > 0xdfff {
				return fmt.Errorf("%w: json: lone surrogate escape %s", ErrInvalid, raw[i:i+6])
			}
			i += 11
		case r >= 0xdc00 && r <= 0xdfff:
			return fmt.Errorf("%w: json: lone surrogate escape %s", ErrInvalid, raw[i:i+6])
		default:
			i += 5
		}
	}
	return nil
}

// escapedRune decodes a \uXXXX escape at the start of b, or returns -1.
func escapedRune(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(n)
}

// checkUTF8 refuses invalid UTF-8 in any string json.Marshal would write.
func checkUTF8(v reflect.Value, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: value nested deeper than %d", ErrInvalid, maxDepth)
	}
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("%w: a string is not UTF-8", ErrInvalid)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return checkUTF8(v.Elem(), depth+1)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // base64 or numbers
		}
		for i := range v.Len() {
			if err := checkUTF8(v.Index(i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := checkUTF8(it.Key(), depth+1); err != nil {
				return err
			}
			if err := checkUTF8(it.Value(), depth+1); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if err := checkUTF8(v.Field(i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
