package cpupeak

import (
	"encoding/binary"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A tiny interpreter for the few instructions of fma_amd64.s, so that the
// AVX-512 kernel's logic (offsets, register use, loop count) is checked on
// machines without AVX-512 too. It also runs the AVX2 kernel, whose result
// on the CPU TestKernels checks, so its reading of the assembly is itself
// checked wherever the CPU has AVX2. It reads the source, so it runs on any
// architecture.

// simKernels are the assembly kernels: function, lanes, accumulators.
var simKernels = []struct {
	name, fn    string
	lanes, accs int
}{
	{"avx512", "fmaAVX512", 16, 24},
	{"avx2", "fmaAVX2", 8, 12},
}

var (
	simTextRe = regexp.MustCompile(`^TEXT\s+·(\w+)\(SB\)`)
	simFPRe   = regexp.MustCompile(`^\w+\+(\d+)\(FP\)$`)
	simMemRe  = regexp.MustCompile(`^(\d*)\((\w+)\)$`)
	simVecRe  = regexp.MustCompile(`^([XYZ])(\d+)$`)
)

// simFuncs returns each function's instructions and labels.
func simFuncs(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile("fma_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string][]string{}
	var cur string
	for line := range strings.Lines(string(src)) {
		line, _, _ = strings.Cut(line, "//")
		line = strings.TrimSpace(line)
		if m := simTextRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if cur != "" && line != "" {
			funcs[cur] = append(funcs[cur], line)
		}
	}
	return funcs
}

// simRun runs fn on acc with frame arguments (acc, n, x, y), acc at
// address 0 of a float32 memory.
func simRun(t *testing.T, code []string, acc []float32, n int, x, y float32) {
	t.Helper()
	frame := make([]byte, 24)
	binary.LittleEndian.PutUint64(frame[8:], uint64(n))
	binary.LittleEndian.PutUint32(frame[16:], math.Float32bits(x))
	binary.LittleEndian.PutUint32(frame[20:], math.Float32bits(y))
	gp := map[string]int64{}
	vec := map[int][]float32{}
	var flag int64 // the last TESTQ or DECQ result
	labels := map[string]int{}
	for i, ins := range code {
		if l, ok := strings.CutSuffix(ins, ":"); ok {
			labels[l] = i
		}
	}
	width := func(kind string) int { return map[string]int{"X": 4, "Y": 8, "Z": 16}[kind] }
	vreg := func(op string) (int, int) {
		m := simVecRe.FindStringSubmatch(op)
		if m == nil {
			t.Fatalf("not a vector register: %q", op)
		}
		r, _ := strconv.Atoi(m[2])
		if vec[r] == nil {
			vec[r] = make([]float32, 16)
		}
		return r, width(m[1])
	}
	fp := func(op string) int {
		m := simFPRe.FindStringSubmatch(op)
		if m == nil {
			t.Fatalf("not an argument: %q", op)
		}
		off, _ := strconv.Atoi(m[1])
		return off
	}
	mem := func(op string, lanes int) []float32 {
		m := simMemRe.FindStringSubmatch(op)
		if m == nil {
			t.Fatalf("not a memory operand: %q", op)
		}
		off, _ := strconv.Atoi(m[1])
		addr := gp[m[2]] + int64(off)
		if addr%4 != 0 || addr < 0 || addr/4+int64(lanes) > int64(len(acc)) {
			t.Fatalf("access of %d floats at %d is outside acc (%d floats)", lanes, addr, len(acc))
		}
		return acc[addr/4 : addr/4+int64(lanes)]
	}
	for pc, steps := 0, 0; pc < len(code); pc++ {
		if steps++; steps > 10_000_000 {
			t.Fatal("runaway loop")
		}
		op, args, _ := strings.Cut(code[pc], " ")
		var a []string
		for f := range strings.SplitSeq(args, ",") {
			if f = strings.TrimSpace(f); f != "" {
				a = append(a, f)
			}
		}
		switch op {
		case "MOVQ":
			gp[a[1]] = int64(binary.LittleEndian.Uint64(frame[fp(a[0]):]))
		case "VBROADCASTSS":
			r, w := vreg(a[1])
			v := math.Float32frombits(binary.LittleEndian.Uint32(frame[fp(a[0]):]))
			clear(vec[r])
			for i := range w {
				vec[r][i] = v
			}
		case "VMOVUPS":
			if strings.Contains(a[0], "(") { // load
				r, w := vreg(a[1])
				clear(vec[r])
				copy(vec[r], mem(a[0], w))
			} else {
				r, w := vreg(a[0])
				copy(mem(a[1], w), vec[r][:w])
			}
		case "VFMADD231PS": // a[2] += a[1] * a[0]
			s, w := vreg(a[0])
			m, _ := vreg(a[1])
			d, _ := vreg(a[2])
			for i := range w {
				vec[d][i] = fma32(vec[m][i], vec[s][i], vec[d][i])
			}
		case "TESTQ":
			if a[0] != a[1] {
				t.Fatalf("TESTQ of two registers: %q", code[pc])
			}
			flag = gp[a[0]]
		case "DECQ":
			gp[a[0]]--
			flag = gp[a[0]]
		case "JLE", "JNZ":
			if (op == "JLE" && flag <= 0) || (op == "JNZ" && flag != 0) {
				pc = labels[a[0]]
			}
		case "VZEROUPPER":
		case "RET":
			return
		default:
			if !strings.HasSuffix(op, ":") {
				t.Fatalf("the interpreter lacks %q", code[pc])
			}
		}
	}
	t.Fatal("ran off the end without RET")
}

func TestSimKernels(t *testing.T) {
	funcs := simFuncs(t)
	for _, sk := range simKernels {
		// The geometry here must be the one MeasureFP32 counts FLOPs by.
		for _, k := range allKernels() {
			if k.name == sk.name && (k.lanes != sk.lanes || k.accs != sk.accs) {
				t.Errorf("%s: kernel has %d lanes x %d accs, the test expects %d x %d",
					k.name, k.lanes, k.accs, sk.lanes, sk.accs)
			}
		}
		code := funcs[sk.fn]
		if code == nil {
			t.Fatalf("no %s in fma_amd64.s", sk.fn)
		}
		if fmas := slices.IndexFunc(code, func(s string) bool { return strings.HasPrefix(s, "DECQ") }) -
			slices.IndexFunc(code, func(s string) bool { return strings.HasPrefix(s, "VFMADD231PS") }); fmas != sk.accs {
			t.Errorf("%s: %d FMAs per iteration, want %d", sk.fn, fmas, sk.accs)
		}
		for _, c := range vectorCases {
			t.Run(sk.name+"/"+c.name, func(t *testing.T) {
				size := sk.lanes * sk.accs
				got := startAcc(size, c.seed)
				want := slices.Clone(got)
				refRun(kernel{name: sk.name}, want, c.n, c.x, c.y)
				simRun(t, code, got, c.n, c.x, c.y)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Errorf("acc[%d] = %g, want %g", i, got[i], want[i])
					}
				}
			})
		}
	}
}
