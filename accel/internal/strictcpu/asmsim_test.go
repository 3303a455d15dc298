package strictcpu

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel/strictmath"
)

// A small interpreter for the subset of Go amd64 assembly that the kernels
// use, so that the logic of the AVX-512 kernels (addresses, offsets, loop
// counts, register use) is checked on machines without AVX-512 too. It runs
// the AVX2 kernels as well, whose results on the CPU the other tests check,
// so its reading of the assembly is itself checked wherever the CPU has
// AVX2. It models values and memory, not encodings or timing, and NaNs only
// up to being NaN. It reads the assembly source, so it runs on any
// architecture.

// simProg is the parsed assembly: each function's instructions, macros
// expanded, and the read-only data.
type simProg struct {
	funcs map[string][]string
	data  map[string][]byte
}

var (
	simDataRe  = regexp.MustCompile(`^DATA\s+(\w+)<>\+(\d+)\(SB\)/(\d+),\s*\$(-?(?:0x[0-9a-fA-F]+|\d+))$`)
	simTextRe  = regexp.MustCompile(`^TEXT\s+·(\w+)\(SB\)`)
	simCallRe  = regexp.MustCompile(`^(\w+)\((.*)\)$`)
	simMemRe   = regexp.MustCompile(`^(.*?)\((\w+)\)(?:\((\w+)\*(\d)\))?$`)
	simFPRe    = regexp.MustCompile(`^\w+\+(\d+)\(FP\)$`)
	simSBRe    = regexp.MustCompile(`^(\w+)<>(?:\+(\d+))?\(SB\)$`)
	simGPRegs  = []string{"AX", "BX", "CX", "DX", "SI", "DI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"}
	simMaxStep = 100_000_000
)

func simParse(t *testing.T, files ...string) *simProg {
	t.Helper()
	p := &simProg{funcs: map[string][]string{}, data: map[string][]byte{}}
	type macro struct {
		params []string
		body   string
	}
	macros := map[string]macro{}
	var cur string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.ReplaceAll(string(src), "\\\n", " "), "\n") {
			if i := strings.Index(line, "//"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			switch {
			case line == "", strings.HasPrefix(line, "#include"), strings.HasPrefix(line, "GLOBL"):
			case strings.HasPrefix(line, "#define"):
				rest := strings.TrimSpace(strings.TrimPrefix(line, "#define"))
				open, close := strings.Index(rest, "("), strings.Index(rest, ")")
				var params []string
				for _, q := range strings.Split(rest[open+1:close], ",") {
					params = append(params, strings.TrimSpace(q))
				}
				macros[rest[:open]] = macro{params, rest[close+1:]}
			case strings.HasPrefix(line, "DATA"):
				m := simDataRe.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("cannot read %q", line)
				}
				off, _ := strconv.Atoi(m[2])
				size, _ := strconv.Atoi(m[3])
				v, _ := strconv.ParseInt(m[4], 0, 64)
				d := p.data[m[1]]
				for len(d) < off+size {
					d = append(d, 0)
				}
				for i := range size {
					d[off+i] = byte(uint64(v) >> (8 * i))
				}
				p.data[m[1]] = d
			case strings.HasPrefix(line, "TEXT"):
				cur = simTextRe.FindStringSubmatch(line)[1]
			default:
				if m := simCallRe.FindStringSubmatch(line); m != nil {
					if mc, ok := macros[m[1]]; ok {
						body, args := mc.body, strings.Split(m[2], ",")
						for i, prm := range mc.params {
							body = regexp.MustCompile(`\b`+prm+`\b`).ReplaceAllString(body, strings.TrimSpace(args[i]))
						}
						for _, ins := range strings.Split(body, ";") {
							if ins = strings.TrimSpace(ins); ins != "" {
								p.funcs[cur] = append(p.funcs[cur], ins)
							}
						}
						continue
					}
				}
				p.funcs[cur] = append(p.funcs[cur], line)
			}
		}
	}
	return p
}

// simVM is the machine: general registers, 32 vector registers of 16 lanes,
// flags, the argument frame and a flat memory starting at base.
type simVM struct {
	t      *testing.T
	gpr    map[string]int64
	vec    [32][16]uint32
	k      [8]uint16 // AVX-512 mask registers
	mem    []byte
	base   int64
	next   int64 // where the next allocation goes
	args   []int64
	zf, lt bool
	blocks [][2]int64 // the allocations, [first, end) addresses
	syms   map[string]int64
}

func newSimVM(t *testing.T, p *simProg, size int) *simVM {
	m := &simVM{t: t, gpr: map[string]int64{}, mem: make([]byte, size), base: 1 << 16, syms: map[string]int64{}}
	m.next = m.base
	for name, d := range p.data {
		a := m.alloc(len(d) / 4)
		copy(m.mem[a-m.base:], d)
		m.syms[name] = a
	}
	return m
}

// alloc returns the address of n fresh float32s after a guard gap.
func (m *simVM) alloc(n int) int64 {
	a := m.next + 64
	m.next = a + int64(4*n)
	m.blocks = append(m.blocks, [2]int64{a, m.next})
	return a
}

func (m *simVM) put(v []float32) int64 {
	a := m.alloc(len(v))
	for i, x := range v {
		m.store(a+4*int64(i), math.Float32bits(x))
	}
	return a
}

func (m *simVM) get(a int64, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(m.load(a + 4*int64(i)))
	}
	return v
}

// check panics unless the four bytes at a lie in one allocation.
func (m *simVM) check(a int64, what string) {
	for _, b := range m.blocks {
		if b[0] <= a && a+4 <= b[1] {
			return
		}
	}
	panic(fmt.Sprintf("%s out of bounds at %#x", what, a))
}

func (m *simVM) load(a int64) uint32 {
	m.check(a, "load")
	i := a - m.base
	b := m.mem[i : i+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (m *simVM) store(a int64, v uint32) {
	m.check(a, "store")
	i := a - m.base
	m.mem[i], m.mem[i+1], m.mem[i+2], m.mem[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// simVec parses a vector register: its number and lanes.
func simVec(s string) (r, lanes int, ok bool) {
	n, err := strconv.Atoi(s[1:])
	if err != nil || len(s) < 2 {
		return 0, 0, false
	}
	switch s[0] {
	case 'X':
		return n, 4, true
	case 'Y':
		return n, 8, true
	case 'Z':
		return n, 16, true
	}
	return 0, 0, false
}

func simInt(s string) int64 {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "("), ")")
	var total int64
	for _, part := range strings.Split(s, "+") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		v, err := strconv.ParseInt(part, 0, 64)
		if err != nil {
			panic("bad integer " + s)
		}
		total += v
	}
	return total
}

// addr returns the address of a memory operand.
func (m *simVM) addr(op string) int64 {
	if s := simSBRe.FindStringSubmatch(op); s != nil {
		return m.syms[s[1]] + simInt(s[2])
	}
	s := simMemRe.FindStringSubmatch(op)
	if s == nil {
		panic("bad memory operand " + op)
	}
	a := simInt(s[1]) + m.gpr[s[2]]
	if s[3] != "" {
		a += m.gpr[s[3]] * simInt(s[4])
	}
	return a
}

func (m *simVM) getInt(op string) int64 {
	switch {
	case strings.HasPrefix(op, "$"):
		return simInt(op[1:])
	case slices.Contains(simGPRegs, op):
		return m.gpr[op]
	}
	if s := simFPRe.FindStringSubmatch(op); s != nil {
		return m.args[simInt(s[1])/8]
	}
	panic("bad integer operand " + op)
}

func (m *simVM) setInt(op string, v int64) {
	if slices.Contains(simGPRegs, op) {
		m.gpr[op] = v
		return
	}
	if s := simFPRe.FindStringSubmatch(op); s != nil {
		m.args[simInt(s[1])/8] = v
		return
	}
	panic("bad integer destination " + op)
}

// getVec reads lanes lanes from a register or from memory.
func (m *simVM) getVec(op string, lanes int) []uint32 {
	if r, _, ok := simVec(op); ok {
		return slices.Clone(m.vec[r][:lanes])
	}
	a, v := m.addr(op), make([]uint32, lanes)
	for i := range v {
		v[i] = m.load(a + 4*int64(i))
	}
	return v
}

// setVec writes a register; VEX and EVEX writes clear the lanes above.
func (m *simVM) setVec(op string, v []uint32) {
	r, lanes, ok := simVec(op)
	if !ok {
		panic("not a vector register: " + op)
	}
	m.vec[r] = [16]uint32{}
	copy(m.vec[r][:lanes], v)
}

// run executes the function name with m.args as its argument frame.
func (m *simVM) run(p *simProg, name string) {
	labels, code := map[string]int{}, []string(nil)
	for _, l := range p.funcs[name] {
		if strings.HasSuffix(l, ":") {
			labels[strings.TrimSuffix(l, ":")] = len(code)
		} else {
			code = append(code, l)
		}
	}
	if code == nil {
		m.t.Fatalf("no assembly function %s", name)
	}
	jump := func(label string) int {
		pc, ok := labels[label]
		if !ok {
			panic("no label " + label)
		}
		return pc
	}
	f, u := math.Float32frombits, math.Float32bits
	for pc, steps := 0, 0; ; steps++ {
		if pc >= len(code) || steps > simMaxStep {
			panic("ran off the end of " + name)
		}
		opc, rest, _ := strings.Cut(code[pc], " ")
		pc++
		var ops []string
		for _, o := range strings.Split(rest, ",") {
			if o = strings.TrimSpace(o); o != "" {
				ops = append(ops, o)
			}
		}
		switch opc {
		case "MOVQ":
			m.setInt(ops[1], m.getInt(ops[0]))
		case "SHLQ":
			m.setInt(ops[1], m.getInt(ops[1])<<m.getInt(ops[0]))
		case "SHRQ":
			v := int64(uint64(m.getInt(ops[1])) >> m.getInt(ops[0]))
			m.setInt(ops[1], v)
			m.zf = v == 0
		case "ANDQ":
			v := m.getInt(ops[1]) & m.getInt(ops[0])
			m.setInt(ops[1], v)
			m.zf = v == 0
		case "ADDQ":
			m.setInt(ops[1], m.getInt(ops[1])+m.getInt(ops[0]))
		case "SUBQ":
			m.setInt(ops[1], m.getInt(ops[1])-m.getInt(ops[0]))
		case "DECQ":
			v := m.getInt(ops[0]) - 1
			m.setInt(ops[0], v)
			m.zf = v == 0
		case "LEAQ":
			m.setInt(ops[1], m.addr(ops[0]))
		case "CMPQ": // Go's order: CMPQ a, b sets the flags of a - b
			a, b := m.getInt(ops[0]), m.getInt(ops[1])
			m.zf, m.lt = a == b, a < b
		case "TESTQ":
			m.zf = m.getInt(ops[0])&m.getInt(ops[1]) == 0
		case "JZ":
			if m.zf {
				pc = jump(ops[0])
			}
		case "JNZ":
			if !m.zf {
				pc = jump(ops[0])
			}
		case "JLT":
			if m.lt {
				pc = jump(ops[0])
			}
		case "JEQ":
			if m.zf {
				pc = jump(ops[0])
			}
		case "JMP":
			pc = jump(ops[0])
		case "RET":
			return
		case "VZEROUPPER":
			for r := range 16 {
				clear(m.vec[r][4:])
			}
		case "VXORPS", "VPXORD":
			_, lanes, _ := simVec(ops[2])
			a, b := m.getVec(ops[0], lanes), m.getVec(ops[1], lanes)
			for i := range a {
				a[i] ^= b[i]
			}
			m.setVec(ops[2], a)
		case "VCMPPS": // only predicate 3, unordered: all ones where either is NaN
			if ops[0] != "$3" {
				panic("the interpreter only knows VCMPPS $3: " + code[pc-1])
			}
			_, lanes, _ := simVec(ops[2])
			a, b := m.getVec(ops[1], lanes), m.getVec(ops[2], lanes)
			var bits uint16
			v := make([]uint32, lanes)
			for i := range v {
				if f(a[i]) != f(a[i]) || f(b[i]) != f(b[i]) {
					v[i], bits = ^uint32(0), bits|1<<i
				}
			}
			if r, ok := strings.CutPrefix(ops[3], "K"); ok {
				n, _ := strconv.Atoi(r)
				m.k[n] = bits
			} else {
				m.setVec(ops[3], v)
			}
		case "VBLENDVPS": // mask, taken where the mask is set, taken elsewhere, destination
			_, lanes, _ := simVec(ops[3])
			mask, a, b := m.getVec(ops[0], lanes), m.getVec(ops[1], lanes), m.getVec(ops[2], lanes)
			for i := range b {
				if int32(mask[i]) < 0 {
					b[i] = a[i]
				}
			}
			m.setVec(ops[3], b)
		case "VMOVUPS", "VMOVDQU":
			if len(ops) == 3 { // merge masking: source, K, destination register
				r, _ := strconv.Atoi(strings.TrimPrefix(ops[1], "K"))
				_, lanes, _ := simVec(ops[2])
				src, dst := m.getVec(ops[0], lanes), m.getVec(ops[2], lanes)
				for i := range dst {
					if m.k[r]>>i&1 != 0 {
						dst[i] = src[i]
					}
				}
				m.setVec(ops[2], dst)
				break
			}
			if strings.Contains(ops[1], "(") {
				_, lanes, _ := simVec(ops[0])
				a := m.addr(ops[1])
				for i, v := range m.getVec(ops[0], lanes) {
					m.store(a+4*int64(i), v)
				}
			} else {
				_, lanes, _ := simVec(ops[1])
				m.setVec(ops[1], m.getVec(ops[0], lanes))
			}
		case "VMOVSS":
			if strings.Contains(ops[1], "(") {
				r, _, _ := simVec(ops[0])
				m.store(m.addr(ops[1]), m.vec[r][0])
			} else {
				m.setVec(ops[1], []uint32{m.load(m.addr(ops[0]))})
			}
		case "VBROADCASTSS":
			_, lanes, _ := simVec(ops[1])
			v := make([]uint32, lanes)
			for i, x := 0, m.load(m.addr(ops[0])); i < lanes; i++ {
				v[i] = x
			}
			m.setVec(ops[1], v)
		case "VMULPS", "VADDPS", "VMULSS", "VADDSS":
			_, lanes, _ := simVec(ops[2])
			n := lanes
			if strings.HasSuffix(opc, "SS") {
				n = 1
			}
			a, b := m.getVec(ops[0], n), m.getVec(ops[1], lanes)
			for i := range n {
				if strings.HasPrefix(opc, "VMUL") {
					b[i] = u(f(b[i]) * f(a[i]))
				} else {
					b[i] = u(f(b[i]) + f(a[i]))
				}
			}
			m.setVec(ops[2], b)
		case "VMASKMOVPS":
			if strings.Contains(ops[2], "(") { // store: source, mask, memory
				src, mask := m.getVec(ops[0], 8), m.getVec(ops[1], 8)
				a := m.addr(ops[2])
				for i := range 8 {
					if int32(mask[i]) < 0 {
						m.store(a+4*int64(i), src[i])
					}
				}
			} else { // load: memory, mask, destination
				mask, a, v := m.getVec(ops[1], 8), m.addr(ops[0]), make([]uint32, 8)
				for i := range 8 {
					if int32(mask[i]) < 0 {
						v[i] = m.load(a + 4*int64(i))
					}
				}
				m.setVec(ops[2], v)
			}
		default:
			panic("the interpreter does not know " + code[pc-1])
		}
	}
}

// TestSimulatedKernels runs every kernel of both levels in the interpreter
// and compares the results with the loops they stand for.
func TestSimulatedKernels(t *testing.T) {
	dir := sourceDir(t)
	p := simParse(t, filepath.Join(dir, "matmul_amd64.s"), filepath.Join(dir, "conv_amd64.s"))
	r := newRand(37)
	for _, c := range []struct {
		name   string
		mr, nr int
	}{{"mmKernel6x16AVX2", 6, 16}, {"mmKernel8x32AVX512", 8, 32}} {
		t.Run(c.name, func(t *testing.T) {
			for _, kc := range []int{1, 2, 3, 4, 5, 8, 9, 128, 131} {
				kind := valueKinds[kc%len(valueKinds)]
				ldc := c.nr + 5
				a, b, cm := values(r, kc*c.mr, kind), values(r, kc*c.nr, kind), values(r, (c.mr+2)*ldc, kind)
				want := slices.Clone(cm)
				for i := range c.mr {
					for j := range c.nr {
						s := want[(i+1)*ldc+j]
						for k := range kc {
							s = s + float32(a[k*c.mr+i]*b[k*c.nr+j])
						}
						want[(i+1)*ldc+j] = s
					}
				}
				m := newSimVM(t, p, 1<<20)
				pa, pb, pc := m.put(a), m.put(b), m.put(cm)
				m.args = []int64{pa, pb, pc + int64(4*ldc), int64(kc), int64(ldc)}
				m.run(p, c.name)
				if got := m.get(pc, len(cm)); !sameUpToNaN(got, want) {
					t.Errorf("kc %d %s: %s", kc, kind, firstDiffNaN(got, want))
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		ns   []int
	}{{"tapsAVX2", []int{1, 7, 8, 9, 31, 32, 33, 64, 100}}, {"tapsAVX512", []int{64, 128, 192}}} {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range c.ns {
				for _, sh := range [][6]int{{1, 1, 1, 1, 0, 0}, {3, 3, 1, 1, 40, 0}, {3, 3, 2, 2, 50, 400}, {2, 5, 3, 3, 23, 300}} {
					for mode := tapsAdd; mode <= tapsOutBias; mode++ {
						kw, kh, nc, dil, rs, cs := sh[0], sh[1], sh[2], sh[3], sh[4], sh[5]
						kind := valueKinds[(n+int(mode))%len(valueKinds)]
						x := values(r, (nc-1)*cs+(kh-1)*rs+(kw-1)*dil+n, kind)
						w := values(r, nc*kh*kw, kind)
						y := values(r, n+16, kind)
						bias := values(r, 1, kind)
						want := slices.Clone(y)
						for i := range n {
							s := want[i]
							if mode != tapsAdd {
								s = 0
							}
							for ch := range nc {
								for rr := range kh {
									for tt := range kw {
										s = s + float32(x[i+ch*cs+rr*rs+tt*dil]*w[(ch*kh+rr)*kw+tt])
									}
								}
							}
							if mode == tapsOutBias {
								s = s + bias[0]
							}
							if mode != tapsAdd {
								s = strictmath.Canon(s)
							}
							want[i] = s
						}
						m := newSimVM(t, p, 1<<20)
						px, pw, py, pb := m.put(x), m.put(w), m.put(y), m.put(bias)
						m.args = []int64{py, int64(n), px, int64(dil), int64(rs), int64(cs), pw, int64(kw), int64(kh), int64(nc), int64(mode), pb}
						m.run(p, c.name)
						got := m.get(py, len(y))
						ok := sameUpToNaN(got, want)
						if mode != tapsAdd {
							ok = ok && sameBits(got[:n], want[:n])
						}
						if !ok {
							t.Errorf("n %d %v mode %d %s: %s", n, sh, mode, kind, firstDiff(got, want))
						}
					}
				}
			}
		})
	}
}
