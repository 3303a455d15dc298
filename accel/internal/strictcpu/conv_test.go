package strictcpu

import (
	"fmt"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

func convParams(stride, pad, dil, groups int) accel.Conv2DParams {
	return accel.Conv2DParams{StrideH: stride, StrideW: stride, PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad,
		DilationH: dil, DilationW: dil, Groups: groups}
}

func TestConv2DHand(t *testing.T) {
	ones9 := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	infRing := []float32{inf, inf, inf, inf, 1, inf, inf, inf, inf}
	for _, c := range []struct {
		name           string
		xshape, wshape []int
		x, w, bias     []float32
		p              accel.Conv2DParams
		want           []float32
	}{
		// H = W = 3, pad 1, kernel 2x2 dilated by 2 (span 3), stride 2:
		// OH = OW = (3+2-3)/2+1 = 2. Output (oh, ow) reads rows
		// 2oh-1+2kh and columns 2ow-1+2kw; only row and column 1 are
		// inside, so each output is x[1,1] = 5 times one weight:
		// (0,0) w[1,1]=4, (0,1) w[1,0]=3, (1,0) w[0,1]=2, (1,1) w[0,0]=1.
		{name: "stride pad dilation bias", xshape: []int{1, 1, 3, 3}, wshape: []int{1, 1, 2, 2},
			x: []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, w: []float32{1, 2, 3, 4}, bias: []float32{0.5},
			p: convParams(2, 1, 2, 1), want: []float32{20.5, 15.5, 10.5, 5.5}},
		// Two groups of two channels, kernel 1x2, padding top 0, left 1,
		// bottom 1, right 0: OH = (2+1-1)+1 = 3, OW = (2+1-2)+1 = 2; the
		// last output row lies in the bottom padding and is the bias alone.
		// oc0 = c0·[1 10] + c1·[100 1000]:
		//   (0,0) 1·10 + 5·1000 = 5010      (0,1) 1+20 + 500+6000 = 6521
		//   (1,0) 3·10 + 7·1000 = 7030      (1,1) 3+40 + 700+8000 = 8743
		// oc1 = c2·[1 -1] + c3·[3 0.5]:
		//   (0,0) 1·-1 + 2·0.5 = 0          (0,1) 1·1+0·-1 + 2·3+2·0.5 = 8
		//   (1,0) 0·-1 + 2·0.5 = 1          (1,1) 0·1+1·-1 + 6+1 = 6
		{name: "groups asymmetric padding", xshape: []int{1, 4, 2, 2}, wshape: []int{2, 2, 1, 2},
			x:    []float32{1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 1, 2, 2, 2, 2},
			w:    []float32{1, 10, 100, 1000, 1, -1, 3, 0.5},
			bias: []float32{0.25, -0.5},
			p:    accel.Conv2DParams{StrideH: 1, StrideW: 1, PadLeft: 1, PadBottom: 1, DilationH: 1, DilationW: 1, Groups: 2},
			want: []float32{5010.25, 6521.25, 7030.25, 8743.25, 0.25, 0.25,
				-0.5, 7.5, 0.5, 5.5, -0.5, -0.5}},
		// 3x3 ones over 1…9 with padding 1: sums of each 3x3 neighbourhood.
		{name: "3x3 pad 1", xshape: []int{1, 1, 3, 3}, wshape: []int{1, 1, 3, 3},
			x: []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, w: ones9, p: convParams(1, 1, 1, 1),
			want: []float32{12, 21, 16, 27, 45, 33, 24, 39, 28}},
		// Padding is skipped, not multiplied: infinite weights that fall
		// on padding leave the result finite.
		{name: "padding skipped", xshape: []int{1, 1, 1, 1}, wshape: []int{1, 1, 3, 3},
			x: []float32{2}, w: infRing, p: convParams(1, 1, 1, 1), want: []float32{2}},
		{name: "inf times zero", xshape: []int{1, 1, 1, 1}, wshape: []int{1, 1, 1, 1},
			x: []float32{0}, w: []float32{inf}, p: convParams(1, 0, 1, 1), want: []float32{strictmath.NaN()}},
		{name: "nan canonical", xshape: []int{1, 1, 1, 2}, wshape: []int{1, 1, 1, 2},
			x: []float32{nanPay, 1}, w: []float32{1, 1}, p: convParams(1, 0, 1, 1), want: []float32{strictmath.NaN()}},
		// -1·0 is -0, but the sum starts at +0.
		{name: "negative zero", xshape: []int{1, 1, 1, 1}, wshape: []int{1, 1, 1, 1},
			x: []float32{-1}, w: []float32{0}, p: convParams(1, 0, 1, 1), want: []float32{0}},
		// The bias comes last: (1e8 + 1) - 1e8 = 0 in f32, where adding
		// the bias first would give 1.
		{name: "bias last", xshape: []int{1, 2, 1, 1}, wshape: []int{1, 2, 1, 1},
			x: []float32{1e8, 1}, w: []float32{1, 1}, bias: []float32{-1e8}, p: convParams(1, 0, 1, 1), want: []float32{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, threads := range []int{1, 3} {
				s := newSession(t, threads)
				var bias *accel.Tensor
				if c.bias != nil {
					bias = tensorF32(t, s, []int{len(c.bias)}, c.bias)
				}
				out, err := s.Conv2D(bg, tensorF32(t, s, c.xshape, c.x), tensorF32(t, s, c.wshape, c.w), bias, c.p)
				if err != nil {
					t.Fatalf("conv2d: %v", err)
				}
				checkBits(t, c.name, readF32(t, s, out), c.want)
			}
		})
	}
}

// naiveConv2D is the contract's conv2d, written out directly, to check the
// row kernels and bands of the fast path.
func naiveConv2D(x, w, bias []float32, xs, ws []int, p accel.Conv2DParams) ([]float32, []int) {
	shape, err := accel.Conv2DShape(xs, ws, nil, p)
	if err != nil {
		panic(err)
	}
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, CG, KH, KW := ws[0], ws[1], ws[2], ws[3]
	OH, OW := shape[2], shape[3]
	y := make([]float32, N*OC*OH*OW)
	for n := range N {
		for oc := range OC {
			g := oc / (OC / p.Groups)
			for oh := range OH {
				for ow := range OW {
					var s float32
					for c := range CG {
						for kh := range KH {
							for kw := range KW {
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if 0 <= ih && ih < H && 0 <= iw && iw < W {
									s = s + float32(x[((n*C+g*CG+c)*H+ih)*W+iw]*w[((oc*CG+c)*KH+kh)*KW+kw])
								}
							}
						}
					}
					if bias != nil {
						s = s + bias[oc]
					}
					y[((n*OC+oc)*OH+oh)*OW+ow] = strictmath.Canon(s)
				}
			}
		}
	}
	return y, shape
}

// convCases are shapes that reach every path of Conv2D: the fused 3x3 rows,
// rows and columns partly in padding, strides, dilations, groups, kernels
// wider than the padded input's interior, and several bands per plane.
var convCases = []struct {
	xs, ws []int
	p      accel.Conv2DParams
	bias   bool
}{
	{[]int{2, 3, 7, 9}, []int{4, 3, 3, 3}, convParams(1, 1, 1, 1), true},
	{[]int{1, 2, 5, 5}, []int{3, 2, 3, 3}, convParams(1, 0, 1, 1), false},
	{[]int{1, 2, 6, 11}, []int{2, 2, 3, 3}, convParams(1, 2, 2, 1), true},
	{[]int{1, 4, 9, 8}, []int{6, 2, 3, 3}, accel.Conv2DParams{StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 2}, true},
	{[]int{1, 3, 10, 7}, []int{3, 1, 5, 2}, accel.Conv2DParams{StrideH: 1, StrideW: 3, PadTop: 4, PadLeft: 1, PadBottom: 3, PadRight: 2, DilationH: 2, DilationW: 3, Groups: 3}, true},
	{[]int{2, 5, 4, 4}, []int{7, 5, 1, 1}, convParams(1, 0, 1, 1), true},
	{[]int{1, 1, 3, 3}, []int{1, 1, 3, 3}, convParams(1, 5, 1, 1), false},
	{[]int{1, 1, 2, 2}, []int{1, 1, 3, 3}, convParams(2, 3, 3, 1), true},
	{[]int{1, 1, 4, 40}, []int{2, 1, 1, 7}, convParams(1, 3, 5, 1), false},
	{[]int{1, 1, 3, 4}, []int{1, 1, 2, 3}, convParams(1, 6, 5, 1), true},
	{[]int{1, 2, 200, 100}, []int{2, 2, 3, 3}, convParams(1, 1, 1, 1), true},
	{[]int{1, 1, 150, 130}, []int{1, 1, 2, 4}, convParams(3, 2, 2, 1), true},
	// Rows too costly for one work item, split into column chunks: a long
	// 1-D kernel over its whole padded input, and a deep 4x4 kernel.
	{[]int{1, 1, 1, 3000}, []int{1, 1, 1, 1500}, accel.Conv2DParams{StrideH: 1, StrideW: 1, PadLeft: 1499, PadRight: 1499, DilationH: 1, DilationW: 1, Groups: 1}, true},
	{[]int{1, 64, 6, 1100}, []int{2, 64, 4, 4}, convParams(1, 1, 1, 1), false},
	{[]int{1, 64, 6, 2300}, []int{1, 64, 4, 4}, convParams(2, 2, 1, 1), true},
	{[]int{1, 128, 4, 1000}, []int{1, 128, 3, 3}, convParams(1, 1, 1, 1), true}, // the fused 3x3 path, in chunks
}

func TestConv2DRows(t *testing.T) {
	r := newRand(11)
	for i, c := range convCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			x := randF32(r, product(c.xs))
			w := randF32(r, product(c.ws))
			// Infinite weights make any multiplication by padding
			// visible as NaN.
			w[0], w[len(w)-1] = inf, -inf
			s := newSession(t, 2)
			var bias []float32
			var bt *accel.Tensor
			if c.bias {
				bias = randF32(r, c.ws[0])
				bt = tensorF32(t, s, []int{c.ws[0]}, bias)
			}
			out, err := s.Conv2D(bg, tensorF32(t, s, c.xs, x), tensorF32(t, s, c.ws, w), bt, c.p)
			if err != nil {
				t.Fatalf("conv2d %v %v %+v: %v", c.xs, c.ws, c.p, err)
			}
			want, shape := naiveConv2D(x, w, bias, c.xs, c.ws, c.p)
			if !equalInts(out.Shape(), shape) {
				t.Fatalf("shape %v, want %v", out.Shape(), shape)
			}
			if !sameBits(readF32(t, s, out), want) {
				t.Errorf("conv2d %v %v %+v differs from the plain loop", c.xs, c.ws, c.p)
			}
		})
	}
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
