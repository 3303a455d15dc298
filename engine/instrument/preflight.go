package instrument

import (
	"errors"
	"fmt"
)

// preflight walks the module's structure without building it, checking that
// every count and length fits in the bytes that remain. wabin allocates by
// the counts it reads, so a few bytes claiming four billion entries would
// otherwise cost gigabytes before the decoder notices the input is short.
func preflight(b []byte) error {
	if len(b) < 8 {
		return errors.New("decode: not a WebAssembly module: too short")
	}
	r := reader{b: b, pos: 8}
	for r.pos < len(b) {
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("decode: section %d: size: %w", id, err)
		}
		if int(size) > len(b)-r.pos {
			return fmt.Errorf("decode: section %d: size %d past the end", id, size)
		}
		s := &reader{b: b[r.pos : r.pos+int(size)]}
		r.pos += int(size)
		if err := scanSection(id, s); err != nil {
			return fmt.Errorf("decode: section %d: %w", id, err)
		}
	}
	return nil
}

// count reads a vector length, each entry taking at least one byte.
func (r *reader) count() (int, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if int(n) > len(r.b)-r.pos {
		return 0, fmt.Errorf("count %d past the end", n)
	}
	return int(n), nil
}

func (r *reader) name() error {
	n, err := r.count()
	if err != nil {
		return err
	}
	return r.skip(n)
}

func (r *reader) limits() error {
	flag, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flag&1 != 0 {
		_, err = r.u32()
	}
	return err
}

// constExpr skips instructions up to and including their end.
func (r *reader) constExpr() error {
	for {
		in, err := r.next()
		if err != nil {
			return err
		}
		if in.info.flow == flowEnd {
			return nil
		}
		if in.info.flow != flowNext {
			return fmt.Errorf("%s in a constant expression", in.info.name)
		}
	}
}

func scanSection(id byte, r *reader) error {
	if id == 0 {
		n, err := r.count()
		if err != nil {
			return err
		}
		if err := r.skip(n); err != nil {
			return err
		}
		if string(r.b[r.pos-n:r.pos]) == "name" {
			return scanNames(r)
		}
		return nil
	}
	if id == 8 || id == 12 { // start, data count: one u32
		_, err := r.u32()
		return err
	}
	if id > 12 {
		return fmt.Errorf("unknown section id %d", id)
	}
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := scanEntry(id, r); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

func scanEntry(id byte, r *reader) error {
	switch id {
	case 1: // type
		if _, err := r.byte(); err != nil {
			return err
		}
		for k := 0; k < 2; k++ {
			if err := r.name(); err != nil { // a vector of one-byte types
				return err
			}
		}
	case 2: // import
		if err := r.name(); err != nil {
			return err
		}
		if err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0:
			_, err = r.u32()
		case 1:
			if err = r.skip(1); err == nil {
				err = r.limits()
			}
		case 2:
			err = r.limits()
		case 3:
			err = r.skip(2)
		default:
			err = fmt.Errorf("bad import kind %d", kind)
		}
		return err
	case 3: // function
		_, err := r.u32()
		return err
	case 4: // table
		if err := r.skip(1); err != nil {
			return err
		}
		return r.limits()
	case 5: // memory
		return r.limits()
	case 6: // global
		if err := r.skip(2); err != nil {
			return err
		}
		return r.constExpr()
	case 7: // export
		if err := r.name(); err != nil {
			return err
		}
		if err := r.skip(1); err != nil {
			return err
		}
		_, err := r.u32()
		return err
	case 9: // element
		return scanElement(r)
	case 10: // code
		size, err := r.count()
		if err != nil {
			return err
		}
		body := &reader{b: r.b[r.pos : r.pos+size]}
		r.pos += size
		decls, err := body.count()
		if err != nil {
			return err
		}
		var total uint64
		for d := 0; d < decls; d++ {
			n, err := body.u32()
			if err != nil {
				return err
			}
			total += uint64(n)
			if total > maxLocals {
				return fmt.Errorf("more than %d locals", maxLocals)
			}
			if err := body.skip(1); err != nil {
				return err
			}
		}
	case 11: // data
		prefix, err := r.u32()
		if err != nil {
			return err
		}
		if prefix == 2 {
			if _, err := r.u32(); err != nil {
				return err
			}
		}
		if prefix != 1 {
			if err := r.constExpr(); err != nil {
				return err
			}
		}
		return r.name()
	}
	return nil
}

func scanElement(r *reader) error {
	prefix, err := r.u32()
	if err != nil {
		return err
	}
	if prefix > 7 {
		return fmt.Errorf("bad element prefix %d", prefix)
	}
	if prefix&3 == 2 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	if prefix&1 == 0 {
		if err := r.constExpr(); err != nil {
			return err
		}
	}
	if prefix&3 != 0 {
		if err := r.skip(1); err != nil {
			return err
		}
	}
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if prefix&4 != 0 {
			err = r.constExpr()
		} else {
			_, err = r.u32()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// scanNames checks the function and local name maps, the parts wabin decodes.
func scanNames(r *reader) error {
	for r.pos < len(r.b) {
		id, _ := r.byte()
		size, err := r.count()
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
		sub := &reader{b: r.b[r.pos : r.pos+size]}
		r.pos += size
		if id != 1 && id != 2 {
			continue
		}
		n, err := sub.count()
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
		for i := 0; i < n; i++ {
			if _, err := sub.u32(); err != nil {
				return fmt.Errorf("name subsection %d: %w", id, err)
			}
			if id == 1 {
				err = sub.name()
			} else {
				var m int
				if m, err = sub.count(); err == nil {
					for j := 0; j < m && err == nil; j++ {
						if _, err = sub.u32(); err == nil {
							err = sub.name()
						}
					}
				}
			}
			if err != nil {
				return fmt.Errorf("name subsection %d: %w", id, err)
			}
		}
		if sub.pos != len(sub.b) {
			return fmt.Errorf("name subsection %d: %d bytes left over", id, len(sub.b)-sub.pos)
		}
	}
	return nil
}
