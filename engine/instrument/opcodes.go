package instrument

import (
	"errors"
	"fmt"
)

// imm is the shape of an instruction's immediates.
type imm uint8

const (
	immNone       imm = iota
	immBlock          // blocktype: 0x40, a value type or an s33 type index
	immU32            // one u32 (label, index)
	immU32x2          // two u32 (call_indirect, table.copy, memory.init, ...)
	immBrTable        // vec(u32) then u32
	immMemarg         // u32 align, u32 offset
	immI32            // s32
	immI64            // s64
	immF32            // 4 bytes
	immF64            // 8 bytes
	immSelectT        // vec(valtype)
	immByte           // one byte (ref.null's reftype, a lane index)
	immBytes16        // v128.const, i8x16.shuffle
	immMemargLane     // memarg then a lane byte
)

// flow says how an instruction moves control, which is what cuts basic blocks.
type flow uint8

const (
	flowNext  flow = iota
	flowBlock      // block
	flowLoop       // loop
	flowIf         // if
	flowElse       // else
	flowEnd        // end
	flowBrIf       // br_if: conditional, falls through
	flowJump       // br, br_table: never falls through
	flowStop       // return, unreachable, return_call*: never falls through
)

// nanKind says which canonical NaN, if any, an instruction's result is rewritten to.
type nanKind uint8

const (
	nanNone nanKind = iota
	nanF32
	nanF64
	nanF32x4
	nanF64x2
	nanKinds
)

// opInfo describes one opcode.
type opInfo struct {
	name string
	imm  imm
	cost int64
	flow flow
	nan  nanKind
}

const (
	prefixFC = 0xFC
	prefixFD = 0xFD
)

// Costs by class; the table below is the whole metering contract.
const (
	costFree   = 0    // block, loop, else, end, nop: structure, no work
	costBase   = 1    // everything else not listed
	costDiv    = 4    // integer div/rem, f32/f64 div and sqrt
	costVecDiv = 8    // f32x4/f64x2 div and sqrt
	costBulk   = 16   // memory.copy/fill/init, table.copy/init/fill/grow: flat, not per byte
	costGrow   = 1000 // memory.grow: flat
)

var (
	singleOps [256]*opInfo
	fcOps     = map[uint32]*opInfo{}
	fdOps     = map[uint32]*opInfo{}
)

func def(tbl map[uint32]*opInfo, code uint32, name string, im imm) *opInfo {
	o := &opInfo{name: name, imm: im, cost: costBase}
	if tbl == nil {
		singleOps[code] = o
	} else {
		tbl[code] = o
	}
	return o
}

func init() {
	s := func(code uint32, name string, im imm) *opInfo { return def(nil, code, name, im) }
	s(0x00, "unreachable", immNone).flow = flowStop
	s(0x01, "nop", immNone).cost = costFree
	for _, o := range []struct {
		c uint32
		n string
		f flow
	}{{0x02, "block", flowBlock}, {0x03, "loop", flowLoop}, {0x04, "if", flowIf}} {
		op := s(o.c, o.n, immBlock)
		op.flow = o.f
		if o.f != flowIf {
			op.cost = costFree
		}
	}
	e := s(0x05, "else", immNone)
	e.flow, e.cost = flowElse, costFree
	e = s(0x0B, "end", immNone)
	e.flow, e.cost = flowEnd, costFree
	s(0x0C, "br", immU32).flow = flowJump
	s(0x0D, "br_if", immU32).flow = flowBrIf
	s(0x0E, "br_table", immBrTable).flow = flowJump
	s(0x0F, "return", immNone).flow = flowStop
	s(0x10, "call", immU32)
	s(0x11, "call_indirect", immU32x2)
	s(0x12, "return_call", immU32).flow = flowStop
	s(0x13, "return_call_indirect", immU32x2).flow = flowStop
	s(0x1A, "drop", immNone)
	s(0x1B, "select", immNone)
	s(0x1C, "select", immSelectT)
	for i, n := range []string{"local.get", "local.set", "local.tee", "global.get", "global.set", "table.get", "table.set"} {
		s(0x20+uint32(i), n, immU32)
	}
	for i, n := range []string{
		"i32.load", "i64.load", "f32.load", "f64.load",
		"i32.load8_s", "i32.load8_u", "i32.load16_s", "i32.load16_u",
		"i64.load8_s", "i64.load8_u", "i64.load16_s", "i64.load16_u", "i64.load32_s", "i64.load32_u",
		"i32.store", "i64.store", "f32.store", "f64.store",
		"i32.store8", "i32.store16", "i64.store8", "i64.store16", "i64.store32",
	} {
		s(0x28+uint32(i), n, immMemarg)
	}
	s(0x3F, "memory.size", immU32)
	s(0x40, "memory.grow", immU32).cost = costGrow
	s(0x41, "i32.const", immI32)
	s(0x42, "i64.const", immI64)
	s(0x43, "f32.const", immF32)
	s(0x44, "f64.const", immF64)
	for i, n := range numericNames {
		s(0x45+uint32(i), n, immNone)
	}
	for _, c := range []uint32{0x6D, 0x6E, 0x6F, 0x70, 0x7F, 0x80, 0x81, 0x82, 0x91, 0x95, 0x9F, 0xA3} {
		singleOps[c].cost = costDiv
	}
	for _, c := range []uint32{0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0xB6} {
		singleOps[c].nan = nanF32
	}
	for _, c := range []uint32{0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xBB} {
		singleOps[c].nan = nanF64
	}
	s(0xD0, "ref.null", immByte)
	s(0xD1, "ref.is_null", immNone)
	s(0xD2, "ref.func", immU32)

	fc := func(code uint32, name string, im imm) *opInfo { return def(fcOps, code, name, im) }
	for i, n := range []string{
		"i32.trunc_sat_f32_s", "i32.trunc_sat_f32_u", "i32.trunc_sat_f64_s", "i32.trunc_sat_f64_u",
		"i64.trunc_sat_f32_s", "i64.trunc_sat_f32_u", "i64.trunc_sat_f64_s", "i64.trunc_sat_f64_u",
	} {
		fc(uint32(i), n, immNone)
	}
	fc(8, "memory.init", immU32x2).cost = costBulk
	fc(9, "data.drop", immU32)
	fc(10, "memory.copy", immU32x2).cost = costBulk
	fc(11, "memory.fill", immU32).cost = costBulk
	fc(12, "table.init", immU32x2).cost = costBulk
	fc(13, "elem.drop", immU32)
	fc(14, "table.copy", immU32x2).cost = costBulk
	fc(15, "table.grow", immU32).cost = costBulk
	fc(16, "table.size", immU32)
	fc(17, "table.fill", immU32).cost = costBulk

	fd := func(code uint32, name string, im imm) *opInfo { return def(fdOps, code, name, im) }
	for i, n := range simdNames {
		if n == "" {
			continue
		}
		im := immNone
		switch {
		case i <= 11 || i == 92 || i == 93:
			im = immMemarg
		case i == 12 || i == 13:
			im = immBytes16
		case i >= 21 && i <= 34:
			im = immByte
		case i >= 84 && i <= 91:
			im = immMemargLane
		}
		fd(uint32(i), n, im)
	}
	for _, c := range []uint32{0xE3, 0xE7, 0xEF, 0xF3} {
		fdOps[c].cost = costVecDiv
	}
	// f32x4: ceil floor trunc nearest sqrt add sub mul div min max pmin pmax, demote.
	for _, c := range []uint32{0x67, 0x68, 0x69, 0x6A, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0x5E} {
		fdOps[c].nan = nanF32x4
	}
	// f64x2: the same, promote.
	for _, c := range []uint32{0x74, 0x75, 0x7A, 0x94, 0xEF, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0x5F} {
		fdOps[c].nan = nanF64x2
	}
}

// numericNames are opcodes 0x45 to 0xC4, in order.
var numericNames = []string{
	"i32.eqz", "i32.eq", "i32.ne", "i32.lt_s", "i32.lt_u", "i32.gt_s", "i32.gt_u", "i32.le_s", "i32.le_u", "i32.ge_s", "i32.ge_u",
	"i64.eqz", "i64.eq", "i64.ne", "i64.lt_s", "i64.lt_u", "i64.gt_s", "i64.gt_u", "i64.le_s", "i64.le_u", "i64.ge_s", "i64.ge_u",
	"f32.eq", "f32.ne", "f32.lt", "f32.gt", "f32.le", "f32.ge",
	"f64.eq", "f64.ne", "f64.lt", "f64.gt", "f64.le", "f64.ge",
	"i32.clz", "i32.ctz", "i32.popcnt", "i32.add", "i32.sub", "i32.mul", "i32.div_s", "i32.div_u", "i32.rem_s", "i32.rem_u",
	"i32.and", "i32.or", "i32.xor", "i32.shl", "i32.shr_s", "i32.shr_u", "i32.rotl", "i32.rotr",
	"i64.clz", "i64.ctz", "i64.popcnt", "i64.add", "i64.sub", "i64.mul", "i64.div_s", "i64.div_u", "i64.rem_s", "i64.rem_u",
	"i64.and", "i64.or", "i64.xor", "i64.shl", "i64.shr_s", "i64.shr_u", "i64.rotl", "i64.rotr",
	"f32.abs", "f32.neg", "f32.ceil", "f32.floor", "f32.trunc", "f32.nearest", "f32.sqrt",
	"f32.add", "f32.sub", "f32.mul", "f32.div", "f32.min", "f32.max", "f32.copysign",
	"f64.abs", "f64.neg", "f64.ceil", "f64.floor", "f64.trunc", "f64.nearest", "f64.sqrt",
	"f64.add", "f64.sub", "f64.mul", "f64.div", "f64.min", "f64.max", "f64.copysign",
	"i32.wrap_i64", "i32.trunc_f32_s", "i32.trunc_f32_u", "i32.trunc_f64_s", "i32.trunc_f64_u",
	"i64.extend_i32_s", "i64.extend_i32_u", "i64.trunc_f32_s", "i64.trunc_f32_u", "i64.trunc_f64_s", "i64.trunc_f64_u",
	"f32.convert_i32_s", "f32.convert_i32_u", "f32.convert_i64_s", "f32.convert_i64_u", "f32.demote_f64",
	"f64.convert_i32_s", "f64.convert_i32_u", "f64.convert_i64_s", "f64.convert_i64_u", "f64.promote_f32",
	"i32.reinterpret_f32", "i64.reinterpret_f64", "f32.reinterpret_i32", "f64.reinterpret_i64",
	"i32.extend8_s", "i32.extend16_s", "i64.extend8_s", "i64.extend16_s", "i64.extend32_s",
}

// simdNames are the 0xFD sub-opcodes 0 to 255; "" is unassigned.
var simdNames = [256]string{
	"v128.load", "v128.load8x8_s", "v128.load8x8_u", "v128.load16x4_s", "v128.load16x4_u", "v128.load32x2_s", "v128.load32x2_u",
	"v128.load8_splat", "v128.load16_splat", "v128.load32_splat", "v128.load64_splat", "v128.store",
	"v128.const", "i8x16.shuffle", "i8x16.swizzle",
	"i8x16.splat", "i16x8.splat", "i32x4.splat", "i64x2.splat", "f32x4.splat", "f64x2.splat",
	"i8x16.extract_lane_s", "i8x16.extract_lane_u", "i8x16.replace_lane",
	"i16x8.extract_lane_s", "i16x8.extract_lane_u", "i16x8.replace_lane",
	"i32x4.extract_lane", "i32x4.replace_lane", "i64x2.extract_lane", "i64x2.replace_lane",
	"f32x4.extract_lane", "f32x4.replace_lane", "f64x2.extract_lane", "f64x2.replace_lane",
	"i8x16.eq", "i8x16.ne", "i8x16.lt_s", "i8x16.lt_u", "i8x16.gt_s", "i8x16.gt_u", "i8x16.le_s", "i8x16.le_u", "i8x16.ge_s", "i8x16.ge_u",
	"i16x8.eq", "i16x8.ne", "i16x8.lt_s", "i16x8.lt_u", "i16x8.gt_s", "i16x8.gt_u", "i16x8.le_s", "i16x8.le_u", "i16x8.ge_s", "i16x8.ge_u",
	"i32x4.eq", "i32x4.ne", "i32x4.lt_s", "i32x4.lt_u", "i32x4.gt_s", "i32x4.gt_u", "i32x4.le_s", "i32x4.le_u", "i32x4.ge_s", "i32x4.ge_u",
	"f32x4.eq", "f32x4.ne", "f32x4.lt", "f32x4.gt", "f32x4.le", "f32x4.ge",
	"f64x2.eq", "f64x2.ne", "f64x2.lt", "f64x2.gt", "f64x2.le", "f64x2.ge",
	"v128.not", "v128.and", "v128.andnot", "v128.or", "v128.xor", "v128.bitselect", "v128.any_true",
	"v128.load8_lane", "v128.load16_lane", "v128.load32_lane", "v128.load64_lane",
	"v128.store8_lane", "v128.store16_lane", "v128.store32_lane", "v128.store64_lane",
	"v128.load32_zero", "v128.load64_zero", "f32x4.demote_f64x2_zero", "f64x2.promote_low_f32x4",
	"i8x16.abs", "i8x16.neg", "i8x16.popcnt", "i8x16.all_true", "i8x16.bitmask",
	"i8x16.narrow_i16x8_s", "i8x16.narrow_i16x8_u", "f32x4.ceil", "f32x4.floor", "f32x4.trunc", "f32x4.nearest",
	"i8x16.shl", "i8x16.shr_s", "i8x16.shr_u", "i8x16.add", "i8x16.add_sat_s", "i8x16.add_sat_u",
	"i8x16.sub", "i8x16.sub_sat_s", "i8x16.sub_sat_u", "f64x2.ceil", "f64x2.floor",
	"i8x16.min_s", "i8x16.min_u", "i8x16.max_s", "i8x16.max_u", "f64x2.trunc", "i8x16.avgr_u",
	"i16x8.extadd_pairwise_i8x16_s", "i16x8.extadd_pairwise_i8x16_u", "i32x4.extadd_pairwise_i16x8_s", "i32x4.extadd_pairwise_i16x8_u",
	"i16x8.abs", "i16x8.neg", "i16x8.q15mulr_sat_s", "i16x8.all_true", "i16x8.bitmask",
	"i16x8.narrow_i32x4_s", "i16x8.narrow_i32x4_u",
	"i16x8.extend_low_i8x16_s", "i16x8.extend_high_i8x16_s", "i16x8.extend_low_i8x16_u", "i16x8.extend_high_i8x16_u",
	"i16x8.shl", "i16x8.shr_s", "i16x8.shr_u", "i16x8.add", "i16x8.add_sat_s", "i16x8.add_sat_u",
	"i16x8.sub", "i16x8.sub_sat_s", "i16x8.sub_sat_u", "f64x2.nearest", "i16x8.mul",
	"i16x8.min_s", "i16x8.min_u", "i16x8.max_s", "i16x8.max_u", "", "i16x8.avgr_u",
	"i16x8.extmul_low_i8x16_s", "i16x8.extmul_high_i8x16_s", "i16x8.extmul_low_i8x16_u", "i16x8.extmul_high_i8x16_u",
	"i32x4.abs", "i32x4.neg", "", "i32x4.all_true", "i32x4.bitmask", "", "",
	"i32x4.extend_low_i16x8_s", "i32x4.extend_high_i16x8_s", "i32x4.extend_low_i16x8_u", "i32x4.extend_high_i16x8_u",
	"i32x4.shl", "i32x4.shr_s", "i32x4.shr_u", "i32x4.add", "", "", "i32x4.sub", "", "", "", "i32x4.mul",
	"i32x4.min_s", "i32x4.min_u", "i32x4.max_s", "i32x4.max_u", "i32x4.dot_i16x8_s", "",
	"i32x4.extmul_low_i16x8_s", "i32x4.extmul_high_i16x8_s", "i32x4.extmul_low_i16x8_u", "i32x4.extmul_high_i16x8_u",
	"i64x2.abs", "i64x2.neg", "", "i64x2.all_true", "i64x2.bitmask", "", "",
	"i64x2.extend_low_i32x4_s", "i64x2.extend_high_i32x4_s", "i64x2.extend_low_i32x4_u", "i64x2.extend_high_i32x4_u",
	"i64x2.shl", "i64x2.shr_s", "i64x2.shr_u", "i64x2.add", "", "", "i64x2.sub", "", "", "", "i64x2.mul",
	"i64x2.eq", "i64x2.ne", "i64x2.lt_s", "i64x2.gt_s", "i64x2.le_s", "i64x2.ge_s",
	"i64x2.extmul_low_i32x4_s", "i64x2.extmul_high_i32x4_s", "i64x2.extmul_low_i32x4_u", "i64x2.extmul_high_i32x4_u",
	"f32x4.abs", "f32x4.neg", "", "f32x4.sqrt", "f32x4.add", "f32x4.sub", "f32x4.mul", "f32x4.div",
	"f32x4.min", "f32x4.max", "f32x4.pmin", "f32x4.pmax",
	"f64x2.abs", "f64x2.neg", "", "f64x2.sqrt", "f64x2.add", "f64x2.sub", "f64x2.mul", "f64x2.div",
	"f64x2.min", "f64x2.max", "f64x2.pmin", "f64x2.pmax",
	"i32x4.trunc_sat_f32x4_s", "i32x4.trunc_sat_f32x4_u", "f32x4.convert_i32x4_s", "f32x4.convert_i32x4_u",
	"i32x4.trunc_sat_f64x2_s_zero", "i32x4.trunc_sat_f64x2_u_zero", "f64x2.convert_low_i32x4_s", "f64x2.convert_low_i32x4_u",
}

// instr is one decoded instruction of a function body.
type instr struct {
	info       *opInfo
	op         byte
	start, end int      // bytes [start, end) of the body
	idx        uint32   // first u32 immediate: a label depth or a function index
	table      []uint32 // br_table's labels, the default last
}

var errTruncated = errors.New("truncated")

// reader reads immediates from a function body; every read is bounds-checked.
type reader struct {
	b   []byte
	pos int
}

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits {
			return 0, errors.New("integer too long")
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if bits < 64 && v>>bits != 0 {
				return 0, errors.New("integer too large")
			}
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// sleb reads a signed LEB128 of at most bits bits.
func (r *reader) sleb(bits uint) (int64, error) {
	var v int64
	var shift uint
	for {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits {
			return 0, errors.New("integer too long")
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

func (r *reader) skip(n int) error {
	if n > len(r.b)-r.pos {
		return errTruncated
	}
	r.pos += n
	return nil
}

func isValType(c byte) bool {
	switch c {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return true
	}
	return false
}

// next decodes the instruction at r.pos.
func (r *reader) next() (in instr, err error) {
	in.start = r.pos
	op, err := r.byte()
	if err != nil {
		return in, err
	}
	in.op = op
	switch op {
	case prefixFC, prefixFD:
		sub, err := r.u32()
		if err != nil {
			return in, fmt.Errorf("opcode 0x%x: %w", op, err)
		}
		tbl := fcOps
		if op == prefixFD {
			tbl = fdOps
		}
		in.info = tbl[sub]
		if in.info == nil {
			return in, fmt.Errorf("unknown opcode 0x%x 0x%x", op, sub)
		}
	default:
		in.info = singleOps[op]
		if in.info == nil {
			return in, fmt.Errorf("unknown opcode 0x%x", op)
		}
	}
	if err := r.immediates(&in); err != nil {
		return in, fmt.Errorf("%s: %w", in.info.name, err)
	}
	in.end = r.pos
	return in, nil
}

func (r *reader) immediates(in *instr) error {
	var err error
	switch in.info.imm {
	case immNone:
	case immBlock:
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c == 0x40 || isValType(c) {
			return nil
		}
		r.pos--
		v, err := r.sleb(33)
		if err != nil {
			return err
		}
		if v < 0 {
			return fmt.Errorf("bad block type %d", v)
		}
	case immU32:
		in.idx, err = r.u32()
	case immU32x2:
		if in.idx, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case immBrTable:
		n, err := r.u32()
		if err != nil {
			return err
		}
		if int(n) > len(r.b)-r.pos {
			return errTruncated
		}
		in.table = make([]uint32, 0, n+1)
		for i := uint32(0); i <= n; i++ {
			l, err := r.u32()
			if err != nil {
				return err
			}
			in.table = append(in.table, l)
		}
	case immMemarg:
		if _, err = r.u32(); err == nil {
			_, err = r.uleb(64)
		}
	case immMemargLane:
		if _, err = r.u32(); err == nil {
			if _, err = r.uleb(64); err == nil {
				err = r.skip(1)
			}
		}
	case immI32:
		_, err = r.sleb(32)
	case immI64:
		_, err = r.sleb(64)
	case immF32:
		err = r.skip(4)
	case immF64:
		err = r.skip(8)
	case immSelectT:
		n, err := r.u32()
		if err != nil {
			return err
		}
		err = r.skip(int(n))
		return err
	case immByte:
		err = r.skip(1)
	case immBytes16:
		err = r.skip(16)
	default:
		return errors.New("bad immediate kind")
	}
	return err
}

// Cost is the fuel one instruction is charged, given its opcode: one byte,
// or a 0xFC or 0xFD prefix and its LEB128 sub-opcode; any immediates after
// the opcode are ignored.
func Cost(opcode []byte) (int64, error) {
	r := reader{b: opcode}
	op, err := r.byte()
	if err != nil {
		return 0, errors.New("cost: empty opcode")
	}
	info := singleOps[op]
	if op == prefixFC || op == prefixFD {
		sub, err := r.u32()
		if err != nil {
			return 0, fmt.Errorf("cost: opcode 0x%x: %w", op, err)
		}
		if op == prefixFC {
			info = fcOps[sub]
		} else {
			info = fdOps[sub]
		}
	}
	if info == nil {
		return 0, fmt.Errorf("cost: unknown opcode % x", opcode)
	}
	return info.cost, nil
}

// CanonicalisedOps lists, in opcode order, the instructions whose results
// CanonicalNaNs rewrites: those whose NaN results may carry a payload or
// sign that depends on the machine.
func CanonicalisedOps() []string {
	var names []string
	for _, o := range singleOps {
		if o != nil && o.nan != nanNone {
			names = append(names, o.name)
		}
	}
	for i := range simdNames {
		if o := fdOps[uint32(i)]; o != nil && o.nan != nanNone {
			names = append(names, o.name)
		}
	}
	return names
}
