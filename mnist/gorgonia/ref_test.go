package oracle

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/mnist"
)

// A plain-Go float64 version of the network, forward and backward, written
// directly from the specification and independent of gorgonia. The tests
// check it against central finite differences of its own forward pass and
// then use it to check gorgonia.

// refParams holds the parameters in float64, in ParamNames order.
type refParams [][]float64

func toRef(params []mnist.Tensor) refParams {
	data, err := orderParams(params)
	if err != nil {
		panic(err)
	}
	p := make(refParams, len(data))
	for i, d := range data {
		p[i] = make([]float64, len(d))
		for j, v := range d {
			p[i][j] = float64(v)
		}
	}
	return p
}

// conv2d5 is a 5×5, stride 1, padding 2 convolution: in [B,ci,h,w],
// w [co,ci,5,5], b [co] → [B,co,h,w].
func conv2d5(in []float64, B, ci, h, w int, wt, b []float64, co int) []float64 {
	out := make([]float64, B*co*h*w)
	for n := 0; n < B; n++ {
		for o := 0; o < co; o++ {
			dst := out[(n*co+o)*h*w : (n*co+o+1)*h*w]
			for i := range dst {
				dst[i] = b[o]
			}
			for c := 0; c < ci; c++ {
				src := in[(n*ci+c)*h*w : (n*ci+c+1)*h*w]
				k := wt[(o*ci+c)*25 : (o*ci+c+1)*25]
				for ky := 0; ky < 5; ky++ {
					for kx := 0; kx < 5; kx++ {
						kv := k[ky*5+kx]
						for y := 0; y < h; y++ {
							iy := y + ky - 2
							if iy < 0 || iy >= h {
								continue
							}
							for x := 0; x < w; x++ {
								ix := x + kx - 2
								if ix < 0 || ix >= w {
									continue
								}
								dst[y*w+x] += kv * src[iy*w+ix]
							}
						}
					}
				}
			}
		}
	}
	return out
}

// conv2d5Back returns the gradients of conv2d5 with respect to its input,
// weights and bias, given the output gradient dout.
func conv2d5Back(in []float64, B, ci, h, w int, wt []float64, co int, dout []float64) (din, dw, db []float64) {
	din = make([]float64, len(in))
	dw = make([]float64, len(wt))
	db = make([]float64, co)
	for n := 0; n < B; n++ {
		for o := 0; o < co; o++ {
			g := dout[(n*co+o)*h*w : (n*co+o+1)*h*w]
			for _, v := range g {
				db[o] += v
			}
			for c := 0; c < ci; c++ {
				src := in[(n*ci+c)*h*w : (n*ci+c+1)*h*w]
				dsrc := din[(n*ci+c)*h*w : (n*ci+c+1)*h*w]
				k := wt[(o*ci+c)*25 : (o*ci+c+1)*25]
				dk := dw[(o*ci+c)*25 : (o*ci+c+1)*25]
				for ky := 0; ky < 5; ky++ {
					for kx := 0; kx < 5; kx++ {
						kv := k[ky*5+kx]
						var acc float64
						for y := 0; y < h; y++ {
							iy := y + ky - 2
							if iy < 0 || iy >= h {
								continue
							}
							for x := 0; x < w; x++ {
								ix := x + kx - 2
								if ix < 0 || ix >= w {
									continue
								}
								acc += g[y*w+x] * src[iy*w+ix]
								dsrc[iy*w+ix] += g[y*w+x] * kv
							}
						}
						dk[ky*5+kx] += acc
					}
				}
			}
		}
	}
	return din, dw, db
}

// reluMask applies relu to z. With fix nil the mask is z > 0; otherwise the
// given mask is used as it is (an activation pattern held fixed).
func reluMask(z []float64, fix []bool) (a []float64, mask []bool) {
	a = make([]float64, len(z))
	mask = fix
	if mask == nil {
		mask = make([]bool, len(z))
		for i, v := range z {
			mask[i] = v > 0
		}
	}
	for i, v := range z {
		if mask[i] {
			a[i] = v
		}
	}
	return a, mask
}

// pool2 is a 2×2 stride-2 max pool over planes of h×w; arg holds the index
// into in of each output's maximum (the first one on ties). With fix set,
// those indices are used instead of searching.
func pool2(in []float64, planes, h, w int, fix []int) (out []float64, arg []int) {
	oh, ow := h/2, w/2
	out = make([]float64, planes*oh*ow)
	if fix != nil {
		for o, i := range fix {
			out[o] = in[i]
		}
		return out, fix
	}
	arg = make([]int, len(out))
	for p := 0; p < planes; p++ {
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				best, bi := math.Inf(-1), -1
				for dy := 0; dy < 2; dy++ {
					for dx := 0; dx < 2; dx++ {
						i := p*h*w + (2*y+dy)*w + 2*x + dx
						if in[i] > best {
							best, bi = in[i], i
						}
					}
				}
				o := p*oh*ow + y*ow + x
				out[o], arg[o] = best, bi
			}
		}
	}
	return out, arg
}

// dense computes x [B,in] · w [in,out] + b.
func dense(x []float64, B, in int, w, b []float64, out int) []float64 {
	y := make([]float64, B*out)
	for n := 0; n < B; n++ {
		copy(y[n*out:(n+1)*out], b)
		for i := 0; i < in; i++ {
			xv := x[n*in+i]
			if xv == 0 {
				continue
			}
			row := w[i*out : (i+1)*out]
			dst := y[n*out : (n+1)*out]
			for j, wv := range row {
				dst[j] += xv * wv
			}
		}
	}
	return y
}

// refCache is what the forward pass keeps for the backward pass. Its relu
// masks and pool arg-maxima are the network's activation pattern: the
// loss is smooth in the parameters as long as the pattern stays the same.
type refCache struct {
	x                  []float64
	z1, p1, z2, p2, a3 []float64
	m1, m2, m3         []bool
	arg1, arg2         []int
	logits, dlogits    []float64
}

// samePattern reports whether two passes took the same piece of the
// piecewise-smooth network.
func (c *refCache) samePattern(d *refCache) bool {
	return slices.Equal(c.m1, d.m1) && slices.Equal(c.m2, d.m2) && slices.Equal(c.m3, d.m3) &&
		slices.Equal(c.arg1, d.arg1) && slices.Equal(c.arg2, d.arg2)
}

// refForward runs the float64 network on x [B,1,28,28] and returns the mean
// loss. With fix set it holds fix's activation pattern instead of deciding
// relu signs and pool maxima afresh.
func refForward(p refParams, x []float64, labels []int, fix *refCache) (float64, *refCache) {
	B := len(labels)
	c := &refCache{x: x}
	var f refCache
	if fix != nil {
		f = *fix
	}
	var a1, a2 []float64
	c.z1 = conv2d5(x, B, 1, 28, 28, p[0], p[1], 16)
	a1, c.m1 = reluMask(c.z1, f.m1)
	c.p1, c.arg1 = pool2(a1, B*16, 28, 28, f.arg1) // [B,16,14,14]
	c.z2 = conv2d5(c.p1, B, 16, 14, 14, p[2], p[3], 32)
	a2, c.m2 = reluMask(c.z2, f.m2)
	c.p2, c.arg2 = pool2(a2, B*32, 14, 14, f.arg2) // [B,32,7,7] = [B,1568]
	z3 := dense(c.p2, B, 1568, p[4], p[5], 128)
	c.a3, c.m3 = reluMask(z3, f.m3)
	logits := dense(c.a3, B, 128, p[6], p[7], 10)
	c.logits = logits

	var loss float64
	c.dlogits = make([]float64, len(logits))
	for n := 0; n < B; n++ {
		row := logits[n*10 : (n+1)*10]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(v - m)
		}
		lse := m + math.Log(s)
		loss += lse - row[labels[n]]
		for k, v := range row {
			c.dlogits[n*10+k] = math.Exp(v-lse) / float64(B)
		}
		c.dlogits[n*10+labels[n]] -= 1 / float64(B)
	}
	return loss / float64(B), c
}

// refBackward returns the gradient of the mean loss for every parameter.
func refBackward(p refParams, c *refCache, B int) refParams {
	g := make(refParams, 8)
	// dense2
	g[6] = make([]float64, 128*10)
	g[7] = make([]float64, 10)
	da3 := make([]float64, B*128)
	for n := 0; n < B; n++ {
		for k := 0; k < 10; k++ {
			d := c.dlogits[n*10+k]
			g[7][k] += d
			for i := 0; i < 128; i++ {
				g[6][i*10+k] += c.a3[n*128+i] * d
				da3[n*128+i] += p[6][i*10+k] * d
			}
		}
	}
	// relu3, dense1
	g[4] = make([]float64, 1568*128)
	g[5] = make([]float64, 128)
	dp2 := make([]float64, B*1568)
	for n := 0; n < B; n++ {
		for j := 0; j < 128; j++ {
			d := da3[n*128+j]
			if !c.m3[n*128+j] || d == 0 {
				continue
			}
			g[5][j] += d
			for i := 0; i < 1568; i++ {
				g[4][i*128+j] += c.p2[n*1568+i] * d
				dp2[n*1568+i] += p[4][i*128+j] * d
			}
		}
	}
	// pool2, relu2, conv2
	dz2 := make([]float64, len(c.z2))
	for o, i := range c.arg2 {
		if c.m2[i] {
			dz2[i] += dp2[o]
		}
	}
	dp1, dw2, db2 := conv2d5Back(c.p1, B, 16, 14, 14, p[2], 32, dz2)
	g[2], g[3] = dw2, db2
	// pool1, relu1, conv1
	dz1 := make([]float64, len(c.z1))
	for o, i := range c.arg1 {
		if c.m1[i] {
			dz1[i] += dp1[o]
		}
	}
	_, dw1, db1 := conv2d5Back(c.x, B, 1, 28, 28, p[0], 16, dz1)
	g[0], g[1] = dw1, db1
	return g
}

// refGradients is refForward followed by refBackward.
func refGradients(p refParams, x []float64, labels []int) (float64, refParams) {
	loss, c := refForward(p, x, labels, nil)
	return loss, refBackward(p, c, len(labels))
}

// randomBatch draws B images of random bytes scaled by 1/255 and random labels.
func randomBatch(seed uint64, B int) (x []float32, labels []int) {
	rng := rand.New(rand.NewPCG(seed, 0xba7c4))
	x = make([]float32, B*Pixels)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	labels = make([]int, B)
	for i := range labels {
		labels[i] = rng.IntN(Classes)
	}
	return x, labels
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
