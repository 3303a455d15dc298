package instrument

import (
	"errors"
	"fmt"
	"math"
)

// funcCtx is what rewriting one body needs to know about the module.
type funcCtx struct {
	meter      bool
	nans       bool
	shiftFrom  uint32 // function indices >= shiftFrom move up by one (the refill import)
	fuel       uint32 // the fuel global's index
	refill     uint32 // the refill function's index
	firstLocal uint32 // index of the first scratch local: params plus declared locals
}

// frame is one open block, loop, if or the function body itself.
type frame struct {
	flow      flow
	reachable bool // its start was reachable
	targeted  bool // a branch goes to its end (blocks and ifs)
	hasElse   bool
	thenFalls bool // an if's then-arm fell through to else
}

// segment is a straight-line run charged as one: cost at instruction at.
type segment struct {
	at    int
	cost  int64
	check bool
}

// maxLocals bounds a function's locals, scratch ones included; wazero
// refuses far fewer anyway.
const maxLocals = 1 << 20

// rewriter rewrites bodies one after another, reusing its buffers: a Go
// guest's code section decodes into millions of instructions.
type rewriter struct {
	c     funcCtx
	ins   []instr
	segs  []segment
	arena []byte // the rewritten bodies, back to back

	wrapped []wrap
	frames  []int
}

// body returns the rewritten body, which lives in w.arena, and the scratch
// locals to append: one per NaN kind used, in first-use order.
func (w *rewriter) body(body []byte) ([]byte, []byte, error) {
	c := w.c
	ins, err := decodeBody(body, w.ins[:0])
	w.ins = ins
	if err != nil {
		return nil, nil, err
	}
	var segs []segment
	var scratch []byte
	if c.meter {
		if segs, err = plan(ins, w.segs[:0]); err != nil {
			return nil, nil, err
		}
		w.segs = segs
	}
	// Loops whose header is checked, and that take and give no values, are
	// wrapped so that the refill call lies outside them (see doc.go).
	wrapped := w.wrapped[:0]
	for _, sg := range segs {
		if sg.check && sg.at > 0 {
			if l := ins[sg.at-1]; l.op == 0x03 && l.end == l.start+2 && body[l.start+1] == 0x40 {
				wrapped = append(wrapped, wrap{loop: sg.at - 1, cost: sg.cost})
			}
		}
	}
	w.wrapped = wrapped
	var slot [nanKinds]uint32 // a kind's local plus one; 0: none yet
	start := len(w.arena)
	out := w.arena
	frames := w.frames[:0] // for each open construct: its wrap, or -1
	si, wi := 0, 0
	for i, in := range ins {
		for si < len(segs) && segs[si].at == i {
			inLoop := wi > 0 && wrapped[wi-1].loop == i-1 && segs[si].check
			out = appendCharge(out, segs[si], c, inLoop)
			si++
		}
		switch in.info.flow {
		case flowBlock, flowIf:
			frames = append(frames, -1)
		case flowLoop:
			if wi < len(wrapped) && wrapped[wi].loop == i {
				frames = append(frames, wi)
				wi++
				// block $done; loop $outer; block $slow; loop $L
				out = append(out, 0x02, 0x40, 0x03, 0x40, 0x02, 0x40, 0x03, 0x40)
				continue
			}
			frames = append(frames, -1)
		case flowEnd:
			if len(frames) > 0 {
				f := frames[len(frames)-1]
				frames = frames[:len(frames)-1]
				if f >= 0 {
					out = appendLoopTail(out, wrapped[f].cost, c)
					continue
				}
			}
		}
		switch {
		case c.meter && (in.op == 0x10 || in.op == 0x12 || in.op == 0xD2):
			out = append(out, in.op)
			out = appendU32(out, shift(in.idx, c.shiftFrom))
		case len(wrapped) > 0 && (in.op == 0x0C || in.op == 0x0D):
			out = append(out, in.op)
			out = appendU32(out, relabel(in.idx, frames))
		case len(wrapped) > 0 && in.op == 0x0E:
			out = append(out, in.op)
			out = appendU32(out, uint32(len(in.table)-1))
			for _, l := range in.table {
				out = appendU32(out, relabel(l, frames))
			}
		default:
			out = append(out, body[in.start:in.end]...)
		}
		if c.nans && in.info.nan != nanNone {
			k := in.info.nan
			if slot[k] == 0 {
				if uint64(c.firstLocal)+uint64(len(scratch)) >= maxLocals {
					return nil, nil, errors.New("too many locals")
				}
				slot[k] = c.firstLocal + uint32(len(scratch)) + 1
				scratch = append(scratch, nanValType[k])
			}
			out = appendCanon(out, k, slot[k]-1)
		}
	}
	w.arena = out
	w.frames = frames
	return out[start:len(out):len(out)], scratch, nil
}

// wrap is a loop wrapped to keep its refill call outside: the index of its
// loop instruction and the cost of its header.
type wrap struct {
	loop int
	cost int64
}

// relabel moves a branch's depth out past the three labels that wrap each
// wrapped loop it leaves; a branch to a wrapped loop itself still names it.
func relabel(depth uint32, frames []int) uint32 {
	d := depth
	for k := 0; k < int(depth) && k < len(frames); k++ {
		if frames[len(frames)-1-k] >= 0 {
			d += 3
		}
	}
	return d
}

// appendLoopTail closes a wrapped loop: the loop falls out to $done, and
// $slow, which its header's check leaves by, refills, gives back the
// header's cost (the header is charged again when the loop is entered
// again) and goes round $outer into the loop.
func appendLoopTail(out []byte, cost int64, c funcCtx) []byte {
	out = append(out, 0x0B, 0x0C, 0x02, 0x0B) // end $L; br $done; end $slow
	out = append(out, 0x23)
	out = appendU32(out, c.fuel)
	out = append(out, 0x10)
	out = appendU32(out, c.refill)
	out = append(out, 0x42)
	out = appendS64(out, cost)
	out = append(out, 0x7C, 0x24) // i64.add, global.set
	out = appendU32(out, c.fuel)
	return append(out, 0x0C, 0x00, 0x0B, 0x0B) // br $outer; end $outer; end $done
}

func shift(idx, from uint32) uint32 {
	if idx >= from {
		return idx + 1
	}
	return idx
}

// decodeBody decodes every instruction and checks that blocks nest and the
// body ends with the end of the function.
func decodeBody(body []byte, ins []instr) ([]instr, error) {
	r := reader{b: body}
	depth := 1
	for r.pos < len(body) {
		if depth == 0 {
			return nil, fmt.Errorf("byte %d: code after the function's end", r.pos)
		}
		in, err := r.next()
		if err != nil {
			return nil, fmt.Errorf("byte %d: %w", in.start, err)
		}
		switch in.info.flow {
		case flowBlock, flowLoop, flowIf:
			depth++
		case flowEnd:
			depth--
		}
		ins = append(ins, in)
	}
	if depth != 0 {
		return nil, errors.New("body does not end with end")
	}
	return ins, nil
}

// plan cuts the body into charged segments.
//
// A segment starts at the function's entry, after loop (with a check),
// after if, else and br_if, and after the end of an if, of a block that a
// branch targets, or of any construct whose end is not reached by falling
// through. The end of a loop or of an untargeted block is reached only from
// the code before it, so what follows continues that segment. Unreachable
// code (after br, br_table, return, unreachable, until its block ends) is
// never charged.
func plan(ins []instr, segs []segment) ([]segment, error) {
	segs = append(segs, segment{at: 0, check: true})
	live := true
	stack := []frame{{flow: flowBlock, reachable: true}}
	open := func(at int, check bool) {
		if live {
			segs = append(segs, segment{at: at, check: check})
		}
	}
	target := func(l uint32) error {
		if int(l) >= len(stack) {
			return fmt.Errorf("branch depth %d out of range", l)
		}
		stack[len(stack)-1-int(l)].targeted = true
		return nil
	}
	for i, in := range ins {
		if live {
			s := &segs[len(segs)-1]
			if s.cost > math.MaxInt64/2 {
				return nil, errors.New("function too costly")
			}
			s.cost += in.info.cost
		}
		switch in.info.flow {
		case flowBlock:
			stack = append(stack, frame{flow: flowBlock, reachable: live})
		case flowLoop:
			stack = append(stack, frame{flow: flowLoop, reachable: live})
			open(i+1, true)
		case flowIf:
			stack = append(stack, frame{flow: flowIf, reachable: live})
			open(i+1, false)
		case flowElse:
			f := &stack[len(stack)-1]
			if f.flow != flowIf || f.hasElse {
				return nil, fmt.Errorf("instruction %d: else without if", i)
			}
			f.hasElse, f.thenFalls = true, live
			live = f.reachable
			open(i+1, false)
		case flowEnd:
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				break
			}
			after := live || f.targeted && f.flow != flowLoop ||
				f.flow == flowIf && (f.hasElse && f.thenFalls || !f.hasElse && f.reachable)
			merge := live && (f.flow == flowLoop || f.flow == flowBlock && !f.targeted)
			switch {
			case !after:
				live = false
			case merge:
			default:
				live = true
				open(i+1, false)
			}
		case flowBrIf:
			if err := target(in.idx); err != nil {
				return nil, err
			}
			open(i+1, false)
		case flowJump:
			if in.table != nil {
				for _, l := range in.table {
					if err := target(l); err != nil {
						return nil, err
					}
				}
			} else if err := target(in.idx); err != nil {
				return nil, err
			}
			live = false
		case flowStop:
			live = false
		}
	}
	// Zero-cost segments need no charge; such a loop header needs no check
	// either, as any cycle through it crosses a costed, checked header.
	kept := segs[:0]
	for _, s := range segs {
		if s.cost > 0 {
			kept = append(kept, s)
		}
	}
	return kept, nil
}

// appendCharge emits fuel -= cost, and for a check: at a wrapped loop's
// header, br_if $slow (fuel < 0), one label out; elsewhere
// if fuel < 0 { fuel = refill(fuel) }.
func appendCharge(out []byte, s segment, c funcCtx, inLoop bool) []byte {
	out = append(out, 0x23)
	out = appendU32(out, c.fuel)
	out = append(out, 0x42)
	out = appendS64(out, s.cost)
	out = append(out, 0x7D, 0x24) // i64.sub, global.set
	out = appendU32(out, c.fuel)
	if !s.check {
		return out
	}
	out = append(out, 0x23)
	out = appendU32(out, c.fuel)
	if inLoop {
		return append(out, 0x42, 0x00, 0x53, 0x0D, 0x01) // i64.const 0, i64.lt_s, br_if $slow
	}
	out = append(out, 0x42, 0x00, 0x53, 0x04, 0x40, 0x23) // i64.const 0, i64.lt_s, if, global.get
	out = appendU32(out, c.fuel)
	out = append(out, 0x10)
	out = appendU32(out, c.refill)
	out = append(out, 0x24)
	out = appendU32(out, c.fuel)
	return append(out, 0x0B)
}

var nanValType = [nanKinds]byte{nanF32: 0x7D, nanF64: 0x7C, nanF32x4: 0x7B, nanF64x2: 0x7B}

// appendCanon emits: local.tee t; canonical NaN; local.get t; local.get t; eq; select.
func appendCanon(out []byte, k nanKind, l uint32) []byte {
	out = append(out, 0x22)
	out = appendU32(out, l)
	switch k {
	case nanF32:
		out = append(out, 0x43, 0x00, 0x00, 0xC0, 0x7F)
	case nanF64:
		out = append(out, 0x44, 0, 0, 0, 0, 0, 0, 0xF8, 0x7F)
	case nanF32x4:
		out = append(out, 0xFD, 0x0C)
		for i := 0; i < 4; i++ {
			out = append(out, 0x00, 0x00, 0xC0, 0x7F)
		}
	case nanF64x2:
		out = append(out, 0xFD, 0x0C)
		for i := 0; i < 2; i++ {
			out = append(out, 0, 0, 0, 0, 0, 0, 0xF8, 0x7F)
		}
	}
	out = append(out, 0x20)
	out = appendU32(out, l)
	out = append(out, 0x20)
	out = appendU32(out, l)
	switch k {
	case nanF32:
		return append(out, 0x5B, 0x1B) // f32.eq, select
	case nanF64:
		return append(out, 0x61, 0x1B) // f64.eq, select
	case nanF32x4:
		return append(out, 0xFD, 0x41, 0xFD, 0x52) // f32x4.eq, v128.bitselect
	default:
		return append(out, 0xFD, 0x47, 0xFD, 0x52) // f64x2.eq, v128.bitselect
	}
}

func appendU32(out []byte, v uint32) []byte {
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

func appendS64(out []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}
