// Elementwise, convolution, pooling, softmax and t-SNE kernels of the numerics
// contract (docs/determinism.md). With ACCEL_STRICT defined every float
// operation is one IEEE operation rounded to nearest even, in the order of the
// reference backend (accel/ref) and accel/strictmath, so the results are its
// bits; without it the same source is the fast build, free to contract
// products into FMAs.
//
// The source is compiled at run time without any header: only builtins.

#ifdef ACCEL_STRICT
#define MUL(a, b) __fmul_rn((a), (b))
#define ADD(a, b) __fadd_rn((a), (b))
#define SUB(a, b) __fsub_rn((a), (b))
#define DIV(a, b) __fdiv_rn((a), (b))
#define SQRT(a) __fsqrt_rn(a)
#else
#define MUL(a, b) ((a) * (b))
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define DIV(a, b) ((a) / (b))
#define SQRT(a) sqrtf(a)
#endif

#define CANONICAL_NAN 0x7fc00000u

// canon returns x, or the canonical NaN if x is any NaN.
__device__ __forceinline__ float canon(float x) {
    return x != x ? __uint_as_float(CANONICAL_NAN) : x;
}

// maxRule is the contract's running maximum: m keeps its value if it is NaN,
// and otherwise takes v if v is NaN or greater. Of equal values the first
// stays.
__device__ __forceinline__ float maxRule(float m, float v) {
    return (m == m && (v != v || v > m)) ? v : m;
}

// Grid-stride loop over [0, n): any grid size covers all the work.
#define FOR_EACH(i, n)                                                  \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; \
         i < (n); i += (long long)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------
// strictmath.Exp and strictmath.Log, operation for operation (fdlibm e_expf.c
// and e_logf.c). The constants are the float32 values of the Go source; the
// bit patterns are noted beside them.

#define LN2_HI 6.9313812256e-01f         // 0x3f317180
#define LN2_LO 9.0580006145e-06f         // 0x3717f7d1
#define EXP_INV_LN2 1.4426950216e+00f    // 0x3fb8aa3b
#define EXP_P1 1.6666667163e-01f         // 0x3e2aaaab
#define EXP_P2 -2.7777778450e-03f        // 0xbb360b61
#define EXP_P3 6.6137559770e-05f         // 0x388ab355
#define EXP_P4 -1.6533901999e-06f        // 0xb5ddea0e
#define EXP_P5 4.1381369442e-08f         // 0x3331bb4c
#define EXP_OVER 8.8721679688e+01f       // 0x42b17180
#define EXP_UNDER -1.0397208405e+02f     // 0xc2cff1b5
#define TWO_M100 7.8886090522e-31f       // 0x0d800000, 2^-100
#define LOG_TWO25 3.3554432000e+07f      // 0x4c000000, 2^25
#define LOG_LG1 6.6666662693e-01f        // 0x3f2aaaaa, 0xaaaaaa/2^24
#define LOG_LG2 4.0000972152e-01f        // 0x3eccce13, 0xccce13/2^25
#define LOG_LG3 2.8498786688e-01f        // 0x3e91e9ee, 0x91e9ee/2^25
#define LOG_LG4 2.4279078841e-01f        // 0x3e789e26, 0xf89e26/2^26
#define LOG_THIRD 3.3333334327e-01f      // 0x3eaaaaab

// strict_exp returns e**x as strictmath.Exp does: +0 on underflow, +Inf on
// overflow, the canonical NaN for NaN.
__device__ float strict_exp(float x) {
    unsigned hx = __float_as_uint(x);
    bool negative = (hx >> 31) != 0;
    hx &= 0x7fffffffu;

    if (hx >= 0x42b17218u) { // |x| >= 88.721..., or not finite
        if (hx > 0x7f800000u) return __uint_as_float(CANONICAL_NAN);
        if (hx == 0x7f800000u) return negative ? 0.0f : x;
        if (x > EXP_OVER) return __uint_as_float(0x7f800000u);
        if (x < EXP_UNDER) return 0.0f;
    }

    float hi = 0.0f, lo = 0.0f;
    int k = 0;
    if (hx > 0x3eb17218u) { // |x| > 0.5 ln2: x = k ln2 + hi - lo
        if (hx < 0x3f851592u) { // and |x| < 1.5 ln2
            if (negative) {
                hi = ADD(x, LN2_HI);
                lo = -LN2_LO;
                k = -1;
            } else {
                hi = SUB(x, LN2_HI);
                lo = LN2_LO;
                k = 1;
            }
        } else {
            float half = negative ? -0.5f : 0.5f;
            k = (int)ADD(MUL(EXP_INV_LN2, x), half); // Go's int32(): truncation
            float t = (float)k;                    // exact
            hi = SUB(x, MUL(t, LN2_HI));           // exact: t*ln2Hi has trailing zeros
            lo = MUL(t, LN2_LO);
        }
        x = SUB(hi, lo);
    } else if (hx < 0x39000000u) { // |x| < 2^-13
        return ADD(1.0f, x);
    }

    float t = MUL(x, x);
    float c = SUB(x, MUL(t, ADD(EXP_P1, MUL(t, ADD(EXP_P2, MUL(t, ADD(EXP_P3,
                  MUL(t, ADD(EXP_P4, MUL(t, EXP_P5))))))))));
    if (k == 0) {
        return SUB(1.0f, SUB(DIV(MUL(x, c), SUB(c, 2.0f)), x));
    }
    float y = SUB(1.0f, SUB(SUB(lo, DIV(MUL(x, c), SUB(2.0f, c))), hi));
    // scale by 2^k in the exponent bits; a negative k wraps as Go's uint32(k)
    if (k >= -125) {
        return __uint_as_float(__float_as_uint(y) + ((unsigned)k << 23));
    }
    return MUL(__uint_as_float(__float_as_uint(y) + ((unsigned)(k + 100) << 23)), TWO_M100);
}

// strict_log returns the natural logarithm of x as strictmath.Log does:
// -Inf for ±0, the canonical NaN for a negative number or NaN, +Inf for +Inf.
__device__ float strict_log(float x) {
    int ix = __float_as_int(x);
    int k = 0;
    if (ix < 0x00800000) { // x < 2^-126, negative, or zero
        if ((ix & 0x7fffffff) == 0) return __uint_as_float(0xff800000u);
        if (ix < 0) return __uint_as_float(CANONICAL_NAN);
        k -= 25;
        x = MUL(x, LOG_TWO25); // scale a subnormal up; exact
        ix = __float_as_int(x);
    }
    if (ix >= 0x7f800000) {
        return canon(ADD(x, x));
    }
    k += (ix >> 23) - 127;
    ix &= 0x007fffff;
    int i = (ix + (0x95f64 << 3)) & 0x800000;
    x = __int_as_float(ix | (i ^ 0x3f800000)); // x or x/2 in [sqrt(2)/2, sqrt(2))
    k += i >> 23;
    float f = SUB(x, 1.0f);
    float dk = (float)k; // exact
    if ((0x007fffff & (0x8000 + ix)) < 0xc000) { // -2^-9 <= f < 2^-9
        if (f == 0.0f) {
            if (k == 0) return 0.0f;
            return ADD(MUL(dk, LN2_HI), MUL(dk, LN2_LO));
        }
        float r = MUL(MUL(f, f), SUB(0.5f, MUL(LOG_THIRD, f)));
        if (k == 0) return SUB(f, r);
        return SUB(MUL(dk, LN2_HI), SUB(SUB(r, MUL(dk, LN2_LO)), f));
    }
    float s = DIV(f, ADD(2.0f, f));
    float z = MUL(s, s);
    i = ix - (0x6147a << 3);
    float w = MUL(z, z);
    int j = (0x6b851 << 3) - ix;
    float t1 = MUL(w, ADD(LOG_LG2, MUL(w, LOG_LG4)));
    float t2 = MUL(z, ADD(LOG_LG1, MUL(w, LOG_LG3)));
    i |= j;
    float r = ADD(t2, t1);
    if (i > 0) {
        float hfsq = MUL(MUL(0.5f, f), f);
        if (k == 0) return SUB(f, SUB(hfsq, MUL(s, ADD(hfsq, r))));
        return SUB(MUL(dk, LN2_HI), SUB(SUB(hfsq, ADD(MUL(s, ADD(hfsq, r)), MUL(dk, LN2_LO))), f));
    }
    if (k == 0) return SUB(f, MUL(s, SUB(f, r)));
    return SUB(MUL(dk, LN2_HI), SUB(SUB(MUL(s, SUB(f, r)), MUL(dk, LN2_LO)), f));
}

// ---------------------------------------------------------------------------
// strictmath's expm1, Tanh, Erf and Sigmoid, operation for operation (msun
// s_expm1f.c, s_tanhf.c and s_erff.c; the sigmoid is 1/(1+exp(-x)) with
// strict_exp). Go's shifts of int32 values are done on unsigned values here,
// where they give the same bits and C++ defines them for negative operands.

#define EXPM1_Q1 -3.3333212137e-02f      // 0xbd088868, -0x888868/2^28
#define EXPM1_Q2 1.5807170421e-03f       // 0x3acf3010, 0xcf3010/2^33
#define TWO_P127 1.7014118346e+38f       // 0x7f000000, 2^127
#define ERF_ERX 8.4269714355e-01f        // 0x3f57bb00
#define ERF_EFX 1.2837916613e-01f        // 0x3e0375d4
#define ERF_EFX8 1.0270333290e+00f       // 0x3f8375d4
#define ERF_PP0 1.2837916613e-01f        // 0x3e0375d4
#define ERF_PP1 -3.3603039384e-01f       // 0xbeac0c2d
#define ERF_PP2 -1.8626139499e-03f       // 0xbaf422f4
#define ERF_QQ1 3.1232431531e-01f        // 0x3e9fe8f9
#define ERF_QQ2 2.1607041359e-02f        // 0x3cb10140
#define ERF_QQ3 -1.9885937218e-03f       // 0xbb025311
#define ERF_PA0 3.6504104628e-06f        // 0x3674f993
#define ERF_PA1 4.1510930657e-01f        // 0x3ed48935
#define ERF_PA2 -2.0939572155e-01f       // 0xbe566bd5
#define ERF_PA3 8.6767755449e-02f        // 0x3db1b34b
#define ERF_QA1 4.9556097388e-01f        // 0x3efdba2b
#define ERF_QA2 3.7124851346e-01f        // 0x3ebe1449
#define ERF_QA3 3.9247896522e-02f        // 0x3d20c267
#define ERF_RA0 -9.8815672100e-03f       // 0xbc21e64c
#define ERF_RA1 -5.4365837574e-01f       // 0xbf0b2d32
#define ERF_RA2 -1.6682831049e+00f       // 0xbfd58a4d
#define ERF_RA3 -6.9155418873e-01f       // 0xbf3109b2
#define ERF_SA1 4.4858155251e+00f        // 0x408f8bcd
#define ERF_SA2 4.1079916954e+00f        // 0x408374ab
#define ERF_SA3 5.5385518074e-01f        // 0x3f0dc974
#define ERF_RB0 -9.8649691790e-03f       // 0xbc21a0ae
#define ERF_RB1 -5.4804980755e-01f       // 0xbf0c4cfe
#define ERF_RB2 -1.8411568403e+00f       // 0xbfebab07
#define ERF_SB1 4.8713274002e+00f        // 0x409be1ea
#define ERF_SB2 3.0498270988e+00f        // 0x4043305e
#define ERF_SB3 -7.6190066338e-01f       // 0xbf430bec
#define SIGMOID_LOW -8.8722839355e+01f   // 0xc2b17218, the largest x whose exp(-x) overflows

// strict_expm1 returns e**x - 1 as strictmath's expm1 does: the sign of a
// zero kept, +Inf above the overflow threshold, -1 below -27 ln2, the
// canonical NaN for NaN.
__device__ float strict_expm1(float x) {
    unsigned hx = __float_as_uint(x);
    bool negative = (hx >> 31) != 0;
    hx &= 0x7fffffffu;

    if (hx >= 0x4195b844u) { // |x| >= 27 ln2, or not finite
        if (hx >= 0x42b17218u) { // |x| >= 88.721...
            if (hx > 0x7f800000u) return __uint_as_float(CANONICAL_NAN);
            if (hx == 0x7f800000u) return negative ? -1.0f : x;
            if (x > EXP_OVER) return __uint_as_float(0x7f800000u);
        }
        if (negative) return -1.0f;
    }

    float hi = 0.0f, lo = 0.0f, c = 0.0f;
    int k = 0;
    if (hx > 0x3eb17218u) { // |x| > 0.5 ln2: x = k ln2 + hi - lo
        if (hx < 0x3f851592u) { // and |x| < 1.5 ln2
            if (negative) {
                hi = ADD(x, LN2_HI);
                lo = -LN2_LO;
                k = -1;
            } else {
                hi = SUB(x, LN2_HI);
                lo = LN2_LO;
                k = 1;
            }
        } else {
            float half = negative ? -0.5f : 0.5f;
            k = (int)ADD(MUL(EXP_INV_LN2, x), half); // Go's int32(): truncation
            float t = (float)k;                    // exact
            hi = SUB(x, MUL(t, LN2_HI));           // exact: t*ln2Hi has trailing zeros
            lo = MUL(t, LN2_LO);
        }
        x = SUB(hi, lo);
        c = SUB(SUB(hi, x), lo);
    } else if (hx < 0x33000000u) { // |x| < 2^-25
        return x;
    }

    float hfx = MUL(0.5f, x);
    float hxs = MUL(x, hfx);
    float r1 = ADD(1.0f, MUL(hxs, ADD(EXPM1_Q1, MUL(hxs, EXPM1_Q2))));
    float t = SUB(3.0f, MUL(r1, hfx));
    float e = MUL(hxs, DIV(SUB(r1, t), SUB(6.0f, MUL(x, t))));
    if (k == 0) {
        return SUB(x, SUB(MUL(x, e), hxs));
    }
    // 2^k; +Inf for k = 128, unused then. Go's int32 k<<23, in unsigned bits
    float twopk = __uint_as_float(0x3f800000u + ((unsigned)k << 23));
    e = SUB(MUL(x, SUB(e, c)), c);
    e = SUB(e, hxs);
    if (k == -1) {
        return SUB(MUL(0.5f, SUB(x, e)), 0.5f);
    }
    if (k == 1) {
        if (x < -0.25f) {
            return MUL(-2.0f, SUB(e, ADD(x, 0.5f)));
        }
        return ADD(1.0f, MUL(2.0f, SUB(x, e)));
    }
    if (k <= -2 || k > 56) { // exp(x)-1 is exp(x) scaled, less one
        float y = SUB(1.0f, SUB(e, x));
        if (k == 128) {
            y = MUL(MUL(y, 2.0f), TWO_P127);
        } else {
            y = MUL(y, twopk);
        }
        return SUB(y, 1.0f);
    }
    if (k < 23) {
        t = __uint_as_float(0x3f800000u - (0x1000000u >> k)); // 1 - 2^-k (Go: 0x3f800000 - 0x1000000>>k)
        float y = SUB(t, SUB(e, x));
        return MUL(y, twopk);
    }
    t = __uint_as_float((unsigned)(0x7f - k) << 23); // 2^-k
    float y = SUB(x, ADD(e, t));
    y = ADD(y, 1.0f);
    return MUL(y, twopk);
}

// strict_abs clears the sign bit of x, as strictmath's abs does.
__device__ __forceinline__ float strict_abs(float x) {
    return __uint_as_float(__float_as_uint(x) & 0x7fffffffu);
}

// strict_tanh returns the hyperbolic tangent of x as strictmath.Tanh does:
// ±0 for ±0, exactly ±1 for |x| >= 9 and ±Inf, x itself for |x| < 2^-12, the
// canonical NaN for NaN.
__device__ float strict_tanh(float x) {
    unsigned jx = __float_as_uint(x);
    unsigned ix = jx & 0x7fffffffu;
    bool negative = (jx >> 31) != 0;

    float z;
    if (ix > 0x7f800000u) {
        return __uint_as_float(CANONICAL_NAN);
    } else if (ix >= 0x41100000u) { // |x| >= 9, or infinite
        z = 1.0f;
    } else if (ix < 0x39800000u) { // |x| < 2^-12
        return x;
    } else if (ix >= 0x3f800000u) { // |x| >= 1
        float t = strict_expm1(MUL(2.0f, strict_abs(x)));
        z = SUB(1.0f, DIV(2.0f, ADD(t, 2.0f)));
    } else {
        float t = strict_expm1(MUL(-2.0f, strict_abs(x)));
        z = DIV(-t, ADD(t, 2.0f));
    }
    if (negative) return -z;
    return z;
}

// strict_erf returns the error function of x as strictmath.Erf does: ±0 for
// ±0, exactly ±1 for |x| >= 4 and ±Inf, the canonical NaN for NaN.
__device__ float strict_erf(float x) {
    int hx = __float_as_int(x);
    int ix = hx & 0x7fffffff;
    if (ix >= 0x7f800000) {
        if (ix > 0x7f800000) return __uint_as_float(CANONICAL_NAN);
        if (hx < 0) return -1.0f;
        return 1.0f;
    }

    if (ix < 0x3f580000) { // |x| < 0.84375
        if (ix < 0x38800000) { // |x| < 2^-14
            if (ix < 0x04000000) { // |x| < 2^-119: scaled by 8 against underflow
                return DIV(ADD(MUL(8.0f, x), MUL(ERF_EFX8, x)), 8.0f);
            }
            return ADD(x, MUL(ERF_EFX, x));
        }
        float z = MUL(x, x);
        float r = ADD(ERF_PP0, MUL(z, ADD(ERF_PP1, MUL(z, ERF_PP2))));
        float s = ADD(1.0f, MUL(z, ADD(ERF_QQ1, MUL(z, ADD(ERF_QQ2, MUL(z, ERF_QQ3))))));
        float y = DIV(r, s);
        return ADD(x, MUL(x, y));
    }
    if (ix < 0x3fa00000) { // 0.84375 <= |x| < 1.25
        float s = SUB(strict_abs(x), 1.0f);
        float p = ADD(ERF_PA0, MUL(s, ADD(ERF_PA1, MUL(s, ADD(ERF_PA2, MUL(s, ERF_PA3))))));
        float q = ADD(1.0f, MUL(s, ADD(ERF_QA1, MUL(s, ADD(ERF_QA2, MUL(s, ERF_QA3))))));
        if (hx >= 0) return ADD(ERF_ERX, DIV(p, q));
        return SUB(-ERF_ERX, DIV(p, q));
    }
    if (ix >= 0x40800000) { // |x| >= 4
        if (hx >= 0) return 1.0f;
        return -1.0f;
    }
    x = strict_abs(x);
    float s = DIV(1.0f, MUL(x, x));
    float r, q;
    if (ix < 0x4036db8c) { // |x| < 2.85715, about 1/0.35
        r = ADD(ERF_RA0, MUL(s, ADD(ERF_RA1, MUL(s, ADD(ERF_RA2, MUL(s, ERF_RA3))))));
        q = ADD(1.0f, MUL(s, ADD(ERF_SA1, MUL(s, ADD(ERF_SA2, MUL(s, ERF_SA3))))));
    } else {
        r = ADD(ERF_RB0, MUL(s, ADD(ERF_RB1, MUL(s, ERF_RB2))));
        q = ADD(1.0f, MUL(s, ADD(ERF_SB1, MUL(s, ADD(ERF_SB2, MUL(s, ERF_SB3))))));
    }
    float z = __uint_as_float((unsigned)ix & 0xffffe000u); // |x| with 13 bits cleared: z*z is exact
    float e = MUL(strict_exp(SUB(MUL(-z, z), 0.5625f)),
                  strict_exp(ADD(MUL(SUB(z, x), ADD(z, x)), DIV(r, q))));
    if (hx >= 0) return SUB(1.0f, DIV(e, x));
    return SUB(DIV(e, x), 1.0f);
}

// strict_sigmoid returns the logistic function as strictmath.Sigmoid does:
// 1/(1+exp(-x)), each operation rounded, and exp(x) itself for x <= the
// point where exp(-x) overflows; the canonical NaN for NaN.
__device__ float strict_sigmoid(float x) {
    if (x != x) return __uint_as_float(CANONICAL_NAN);
    if (x <= SIGMOID_LOW) return strict_exp(x);
    return DIV(1.0f, ADD(1.0f, strict_exp(-x)));
}

// ---------------------------------------------------------------------------
// conv2d_direct computes one output element per work item: s = +0, then for c,
// kh and kw in order the products of the taps inside the input (padding is
// skipped, not multiplied by zero), then the bias. The valid kh and kw are a
// range per output, so restricting the loops to it keeps the order. Tensors
// hold fewer than 2^31 elements, so int indices do not overflow.
extern "C" __global__ void conv2d_direct(const float* __restrict__ x, const float* __restrict__ w,
                                         const float* __restrict__ bias, float* __restrict__ y,
                                         int N, int C, int H, int W, int OC, int KH, int KW,
                                         int OH, int OW, int SH, int SW, int PT, int PL,
                                         int DH, int DW, int G) {
    const long long total = (long long)N * OC * OH * OW;
    const int CG = C / G, OCG = OC / G;
    const int HW = H * W, KK = KH * KW;
    FOR_EACH(idx, total) {
        int r = (int)idx;
        const int ow = r % OW;
        r /= OW;
        const int oh = r % OH;
        r /= OH;
        const int oc = r % OC;
        const int n = r / OC;
        const int g = oc / OCG;

        // kernel rows kh with 0 <= ih0 + kh*DH < H, and columns likewise
        const int ih0 = oh * SH - PT, iw0 = ow * SW - PL;
        const int khLo = ih0 < 0 ? (-ih0 + DH - 1) / DH : 0;
        const int khHi = ih0 > H - 1 ? 0 : min(KH, (H - 1 - ih0) / DH + 1);
        const int kwLo = iw0 < 0 ? (-iw0 + DW - 1) / DW : 0;
        const int kwHi = iw0 > W - 1 ? 0 : min(KW, (W - 1 - iw0) / DW + 1);

        float s = 0.0f;
        if (khLo < khHi && kwLo < kwHi) {
            // offsets of tap (c, kh, kwLo): input and weights
            int xo = (n * C + g * CG) * HW + (ih0 + khLo * DH) * W + iw0 + kwLo * DW;
            int wo = oc * CG * KK + khLo * KW + kwLo;
            const int nkw = kwHi - kwLo;
            const int xRow = DH * W, xPlane = HW - (khHi - khLo) * xRow;
            const int wPlane = KK - (khHi - khLo) * KW;
            for (int c = 0; c < CG; c++) {
                for (int kh = khLo; kh < khHi; kh++) {
                    const float* xr = x + xo;
                    const float* wr = w + wo;
                    for (int t = 0; t < nkw; t++) {
                        s = ADD(s, MUL(xr[t * DW], wr[t]));
                    }
                    xo += xRow;
                    wo += KW;
                }
                xo += xPlane;
                wo += wPlane;
            }
        }
        if (bias != 0) {
            s = ADD(s, bias[oc]); // the bias comes last
        }
        y[idx] = canon(s);
    }
}

// add_bias computes y[i] = canon(x[i] + b[i / inner % dim]), inner being the
// product of the dimensions after the bias axis.
extern "C" __global__ void add_bias(const float* __restrict__ x, const float* __restrict__ b,
                                    float* __restrict__ y, long long n, int dim, long long inner) {
    if (n <= 0x7fffffffLL) {
        // 32-bit division is much cheaper, and covers every tensor
        const unsigned in32 = (unsigned)inner, d32 = (unsigned)dim;
        FOR_EACH(i, n) {
            y[i] = canon(ADD(x[i], b[((unsigned)i / in32) % d32]));
        }
        return;
    }
    FOR_EACH(i, n) {
        y[i] = canon(ADD(x[i], b[(i / inner) % dim]));
    }
}

// add computes y[i] = canon(a[i] + b[i]): one IEEE addition per element, as
// add_bias does. a and b may be one tensor; y is neither.
extern "C" __global__ void add(const float* __restrict__ a, const float* __restrict__ b,
                               float* __restrict__ y, long long n) {
    FOR_EACH(i, n) {
        y[i] = canon(ADD(a[i], b[i]));
    }
}

// clip computes y[i] = canon(min(max(x[i], lo), hi)) in the contract's
// comparisons: lo where x < lo, then hi where that is > hi. A NaN fails both
// and gives the canonical NaN; a zero equal to a zero bound keeps its sign.
extern "C" __global__ void clip(const float* __restrict__ x, float* __restrict__ y, long long n,
                                float lo, float hi) {
    FOR_EACH(i, n) {
        float v = x[i];
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        y[i] = canon(v);
    }
}

// unary computes y[i] = canon(f(x[i])) for unary's functions, whose codes
// are accel.UnaryFunc's, in the contract's operations (strictcpu's
// UnaryElement): abs and neg on the sign bit; sqrt and reciprocal one
// rounded operation; leaky_relu x where x >= 0, else alpha*x; hard_sigmoid
// t = alpha*x, t + beta, then +0 where that is not above 0 and 1 where it is
// above 1; hard_swish x times hard_sigmoid with alpha the float nearest
// 1/6 and beta 1/2; exp, log, tanh, sigmoid and erf strictmath's (strict_exp,
// strict_log, strict_tanh, strict_sigmoid and strict_erf). The fast build
// uses the hardware's expf, logf, tanhf and erff, and 1/(1+expf(-x)) for the
// sigmoid.
#define HARD_SWISH_ALPHA 1.6666667163e-01f // 0x3e2aaaab

__device__ __forceinline__ float hard_sigmoid(float v, float alpha, float beta) {
    float t = ADD(MUL(alpha, v), beta);
    if (t > 1.0f) return 1.0f;
    if (t > 0.0f || t != t) return t;
    return 0.0f;
}

extern "C" __global__ void unary(const float* __restrict__ x, float* __restrict__ y, long long n,
                                 unsigned fn, float alpha, float beta) {
    FOR_EACH(i, n) {
        float v = x[i];
        float r;
        switch (fn) {
        case 1: r = __uint_as_float(__float_as_uint(v) & 0x7fffffffu); break;
        case 2: r = __uint_as_float(__float_as_uint(v) ^ 0x80000000u); break;
        case 3: r = SQRT(v); break;
        case 4: r = DIV(1.0f, v); break;
        case 5: r = v >= 0.0f ? v : MUL(alpha, v); break;
        case 6: r = hard_sigmoid(v, alpha, beta); break;
        case 7: r = MUL(v, hard_sigmoid(v, HARD_SWISH_ALPHA, 0.5f)); break;
#ifdef ACCEL_STRICT
        case 8: r = strict_exp(v); break;
        case 9: r = strict_log(v); break;
        case 10: r = strict_tanh(v); break;
        case 11: r = strict_sigmoid(v); break;
        case 12: r = strict_erf(v); break;
#else
        case 8: r = expf(v); break;
        case 9: r = logf(v); break;
        case 10: r = tanhf(v); break;
        case 11: r = DIV(1.0f, ADD(1.0f, expf(-v))); break;
        case 12: r = erff(v); break;
#endif
        default: r = __uint_as_float(CANONICAL_NAN);
        }
        y[i] = canon(r);
    }
}

// binary computes y[i] = canon(a[ia] op b[ib]) with NumPy's broadcasting:
// one IEEE operation per element, fn accel.BinaryFunc's code (1 add, 2 sub,
// 3 mul, 4 div). The output's rank dims are d0..d7 (the first rank of
// them used), and a0..a7 and b0..b7 each operand's step along each axis,
// 0 where it repeats.
#define BCAST_PARAMS(p) long long p##0, long long p##1, long long p##2, long long p##3, \
    long long p##4, long long p##5, long long p##6, long long p##7
extern "C" __global__ void binary(const float* __restrict__ a, const float* __restrict__ b,
                                  float* __restrict__ y, long long n, unsigned fn, int rank,
                                  BCAST_PARAMS(d), BCAST_PARAMS(sa), BCAST_PARAMS(sb)) {
    const long long dims[8] = {d0, d1, d2, d3, d4, d5, d6, d7};
    const long long stepA[8] = {sa0, sa1, sa2, sa3, sa4, sa5, sa6, sa7};
    const long long stepB[8] = {sb0, sb1, sb2, sb3, sb4, sb5, sb6, sb7};
    FOR_EACH(i, n) {
        long long r = i, ia = 0, ib = 0;
        for (int d = rank - 1; d >= 0; d--) {
            const long long k = r % dims[d];
            r /= dims[d];
            ia += k * stepA[d];
            ib += k * stepB[d];
        }
        const float u = a[ia], v = b[ib];
        float w;
        switch (fn) {
        case 1: w = ADD(u, v); break;
        case 2: w = SUB(u, v); break;
        case 3: w = MUL(u, v); break;
        case 4: w = DIV(u, v); break;
        default: w = __uint_as_float(CANONICAL_NAN);
        }
        y[i] = canon(w);
    }
}

// transpose copies y[i] = canon(x[src]) with the axes permuted: the
// output's rank dims are d0..d7, and s0..s7 the input's step along each
// output axis.
extern "C" __global__ void transpose(const float* __restrict__ x, float* __restrict__ y,
                                     long long n, int rank, BCAST_PARAMS(d), BCAST_PARAMS(s)) {
    const long long dims[8] = {d0, d1, d2, d3, d4, d5, d6, d7};
    const long long step[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    FOR_EACH(i, n) {
        long long r = i, src = 0;
        for (int d = rank - 1; d >= 0; d--) {
            src += (r % dims[d]) * step[d];
            r /= dims[d];
        }
        y[i] = canon(x[src]);
    }
}

// blocksum returns strictmath.BlockSum of v[0..n): runs of BLOCK_LEN summed
// in order from +0, their sums through the tree as global_avgpool builds it.
#define BLOCK_LEN 256
__device__ float blocksum(const float* v, long long n) {
    float level[40];  // 2^40 runs is beyond any tensor
    long long runs = 0;
    for (long long r0 = 0; r0 < n; r0 += BLOCK_LEN) {
        const long long r1 = r0 + BLOCK_LEN < n ? r0 + BLOCK_LEN : n;
        float s = 0.0f;
        for (long long k = r0; k < r1; k++) {
            s = ADD(s, v[k]);
        }
        int l = 0;
        for (; (runs >> l) & 1; l++) {
            s = ADD(level[l], s);
        }
        level[l] = s;
        runs++;
    }
    float s = 0.0f;
    bool first = true;
    for (int l = 0; l < 40; l++) {
        if (((runs >> l) & 1) == 0) continue;
        s = first ? level[l] : ADD(level[l], s);
        first = false;
    }
    return s;
}

// layer_norm normalises each of rows rows of n values, one thread a row,
// as strictcpu's LayerNorm: mean = blocksum(row) / fn; the squares of
// d = x - mean go through y's row for their blocksum; inv = 1 / sqrt(var +
// eps); y = (d * inv) * scale + bias, bias null where absent.
extern "C" __global__ void layer_norm(const float* __restrict__ x, const float* __restrict__ scale,
                                      const float* __restrict__ bias, float* __restrict__ y,
                                      long long rows, long long n, float fn, float eps) {
    FOR_EACH(r, rows) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        const float mean = DIV(blocksum(xr, n), fn);
        for (long long j = 0; j < n; j++) {
            const float d = SUB(xr[j], mean);
            yr[j] = MUL(d, d);
        }
        const float inv = DIV(1.0f, SQRT(ADD(DIV(blocksum(yr, n), fn), eps)));
        for (long long j = 0; j < n; j++) {
            float t = MUL(MUL(SUB(xr[j], mean), inv), scale[j]);
            if (bias != nullptr) t = ADD(t, bias[j]);
            yr[j] = canon(t);
        }
    }
}

// concat copies y = a then b along an axis: each of the n outputs is from
// a or b by its place in its block of na + nb, the blocks following the
// outer index.
extern "C" __global__ void concat(const float* __restrict__ a, const float* __restrict__ b,
                                  float* __restrict__ y, long long n, long long na, long long nb) {
    FOR_EACH(i, n) {
        const long long o = i / (na + nb), r = i % (na + nb);
        y[i] = canon(r < na ? a[o * na + r] : b[o * nb + r - na]);
    }
}

// slice copies y[i] = canon(x[src]) from a strided window of x: the
// output's rank dims are d0..d7, s0..s7 the step in x along each (x's
// stride times the slice's step, which may be negative or 0), and base the
// element the window starts at.
extern "C" __global__ void slice(const float* __restrict__ x, float* __restrict__ y,
                                 long long n, long long base, int rank, BCAST_PARAMS(d), BCAST_PARAMS(s)) {
    const long long dims[8] = {d0, d1, d2, d3, d4, d5, d6, d7};
    const long long step[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    FOR_EACH(i, n) {
        long long r = i, src = base;
        for (int d = rank - 1; d >= 0; d--) {
            src += (r % dims[d]) * step[d];
            r /= dims[d];
        }
        y[i] = canon(x[src]);
    }
}

// gather copies y = x's blocks of inner values at the m indices along an
// axis of size d: output i is in block q = i / inner, which takes index k =
// q % m of the outer index q / m; an index below 0 counts from the end.
// The Session has checked every index against d.
extern "C" __global__ void gather(const float* __restrict__ x, const int* __restrict__ indices,
                                  float* __restrict__ y, long long n, long long m, long long d,
                                  long long inner) {
    FOR_EACH(i, n) {
        const long long q = i / inner, r = i % inner;
        long long j = indices[q % m];
        if (j < 0) {
            j += d;
        }
        y[i] = canon(x[((q / m) * d + j) * inner + r]);
    }
}

// global_avgpool computes the mean of each of planes planes of hw values:
// canon(blocksum(plane) / d), d the f32 value of hw, one thread a plane.
// The blocksum's runs of 256 are summed in order from +0; their sums go
// into the treesum as a binary counter carries (strictcpu's runTree): a
// complete subtree per set bit of the count of runs so far, left + right
// on each carry, and at the end the subtrees added from the right.
extern "C" __global__ void global_avgpool(const float* __restrict__ x, float* __restrict__ y,
                                          long long planes, long long hw, float d) {
    FOR_EACH(p, planes) {
        y[p] = canon(DIV(canon(blocksum(x + p * hw, hw)), d));
    }
}

// relu: the canonical NaN for NaN, x for x > 0, +0 otherwise (so -0 gives +0).
extern "C" __global__ void relu(const float* __restrict__ x, float* __restrict__ y, long long n) {
    FOR_EACH(i, n) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : (v != v ? __uint_as_float(CANONICAL_NAN) : 0.0f);
    }
}

// maxpool2d scans each window row-major over its positions inside the input
// with the max rule, one output per work item.
extern "C" __global__ void maxpool2d(const float* __restrict__ x, float* __restrict__ y,
                                     int N, int C, int H, int W, int OH, int OW,
                                     int KH, int KW, int SH, int SW, int PT, int PL) {
    const long long total = (long long)N * C * OH * OW;
    FOR_EACH(idx, total) {
        int r = (int)idx;
        const int ow = r % OW;
        r /= OW;
        const int oh = r % OH;
        const int plane = r / OH;
        const int ih0 = oh * SH - PT, iw0 = ow * SW - PL;
        const int ihLo = max(ih0, 0), ihHi = min(ih0 + KH, H);
        const int iwLo = max(iw0, 0), iwHi = min(iw0 + KW, W);
        if (ihLo >= ihHi || iwLo >= iwHi) {
            // no input in the window: shapes are checked so that this cannot
            // happen; write NaN rather than read outside the plane
            y[idx] = __uint_as_float(CANONICAL_NAN);
            continue;
        }
        const float* xp = x + (long long)plane * H * W;
        const float* row = xp + ihLo * W;
        float m = row[iwLo];
        for (int iw = iwLo + 1; iw < iwHi; iw++) {
            m = maxRule(m, row[iw]);
        }
        for (int ih = ihLo + 1; ih < ihHi; ih++) {
            row = xp + ih * W;
            for (int iw = iwLo; iw < iwHi; iw++) {
                m = maxRule(m, row[iw]);
            }
        }
        y[idx] = canon(m);
    }
}

// softmax_rows normalises each row of L values, one row per work item: m by
// the max rule, e[i] = exp(x[i] - m) kept in y, s their sum from the left,
// then y[i] = canon(e[i] / s).
extern "C" __global__ void softmax_rows(const float* __restrict__ x, float* __restrict__ y,
                                        long long rows, int L) {
    if (L <= 0) return;
    FOR_EACH(r, rows) {
        const float* xs = x + r * L;
        float* ys = y + r * L;
        float m = xs[0];
        for (int i = 1; i < L; i++) {
            m = maxRule(m, xs[i]);
        }
        float s = 0.0f;
        for (int i = 0; i < L; i++) {
            const float e = strict_exp(SUB(xs[i], m));
            ys[i] = e;
            s = ADD(s, e);
        }
        for (int i = 0; i < L; i++) {
            ys[i] = canon(DIV(ys[i], s));
        }
    }
}

// ---------------------------------------------------------------------------
// t-SNE (docs/determinism.md, tsne_step). Y, U and G are [n, 2], interleaved.

#define TSNE_TILE 128

// tsneRepulse adds the repulsion of the point (xj, yj) to the sums of (xi, yi).
__device__ __forceinline__ void tsneRepulse(float xi, float yi, float xj, float yj,
                                            float& z, float& rx, float& ry) {
    const float dx = SUB(xi, xj);
    const float dy = SUB(yi, yj);
    const float q = DIV(1.0f, ADD(1.0f, ADD(MUL(dx, dx), MUL(dy, dy))));
    z = ADD(z, q);
    const float q2 = MUL(q, q);
    rx = ADD(rx, MUL(q2, dx));
    ry = ADD(ry, MUL(q2, dy));
}

// On sm_90 the compiler's correctly rounded division 1/d (and rcp.rn) is, for
// 2^-126 <= d < 2^126, the hardware approximation refined by one fused Newton
// step; outside that range it calls a slow path. The branch around every
// division keeps the hot loop from overlapping one pair with the next. When
// every coordinate of a tile and of the row's own point is below 2^61 in
// magnitude (and none is NaN), every denominator 1 + dx² + dy² of the tile lies
// in [1, 2^125], so the tile takes that fast path without any branch. The
// result is the correctly rounded 1/d either way, as DIV gives: the cuda
// package's TestReciprocalExhaustive checks it against __fdiv_rn(1, d) for
// every d in [1, 2^126).
// Elsewhere, and for tiles with larger coordinates, it is plain DIV.
#define TSNE_SMALL 2305843009213693952.0f // 2^61
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900
#define TSNE_RCP_FAST 1
__device__ __forceinline__ float rcpInRange(float d) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
    const float e = __fmaf_rn(d, r, -1.0f); // exact residual, as rcp.rn
    return __fmaf_rn(r, -e, r);
}
#endif

// tsneRepulseSmall is tsneRepulse for |coordinates| < 2^61.
__device__ __forceinline__ void tsneRepulseSmall(float xi, float yi, float xj, float yj,
                                                 float& z, float& rx, float& ry) {
#ifdef TSNE_RCP_FAST
    const float dx = SUB(xi, xj);
    const float dy = SUB(yi, yj);
    const float q = rcpInRange(ADD(1.0f, ADD(MUL(dx, dx), MUL(dy, dy))));
    z = ADD(z, q);
    const float q2 = MUL(q, q);
    rx = ADD(rx, MUL(q2, dx));
    ry = ADD(ry, MUL(q2, dy));
#else
    tsneRepulse(xi, yi, xj, yj, z, rx, ry);
#endif
}

__device__ __forceinline__ bool tsneSmall(float x, float y) {
    return x < TSNE_SMALL && x > -TSNE_SMALL && y < TSNE_SMALL && y > -TSNE_SMALL;
}

// tsne_repulse computes, for each row i, z = Σq, rx = Σq²dx and ry = Σq²dy
// over j = 0 … n-1, j != i, in increasing j; one thread per row. It must be
// launched with TSNE_TILE threads a block. The block stages the points through
// shared memory a tile at a time, loading the next tile into registers while
// it works on this one. The row's own point lies in the block's own tile
// (tiles and blocks are the same size), the only one that needs the j != i
// split; it and a last, partial tile take the pairs through DIV. The sums are
// written raw: they are only intermediate values.
extern "C" __global__ void __launch_bounds__(TSNE_TILE)
tsne_repulse(const float* __restrict__ Y, float* __restrict__ z, float* __restrict__ rx,
             float* __restrict__ ry, int n) {
    __shared__ float4 tile4[TSNE_TILE / 2]; // float4 for loads of two points
    float2* tile = (float2*)tile4;
    const float2* P = (const float2*)Y;
    const int tid = threadIdx.x;
    const int tiles = (n + TSNE_TILE - 1) / TSNE_TILE;
    for (int b = blockIdx.x; b < tiles; b += gridDim.x) { // uniform per block
        const int i = b * TSNE_TILE + tid;
        const bool live = i < n; // threads past the end help load, nothing else
        float xi = 0.0f, yi = 0.0f;
        if (live) {
            const float2 pi = P[i];
            xi = pi.x;
            yi = pi.y;
        }
        const bool ownSmall = tsneSmall(xi, yi);
        float zs = 0.0f, sx = 0.0f, sy = 0.0f;
        float2 next;
        if (tid < n) next = P[tid];
        for (int t = 0; t < tiles; t++) {
            const int base = t * TSNE_TILE;
            __syncthreads(); // everyone is done with the previous tile
            int small = 1;
            if (base + tid < n) {
                tile[tid] = next;
                small = tsneSmall(next.x, next.y);
            }
            const bool tileSmall = __syncthreads_and(small);
            if (base + TSNE_TILE + tid < n) next = P[base + TSNE_TILE + tid];
            const int cnt = min(TSNE_TILE, n - base);
            if (!live) continue;
            if (t != b && cnt == TSNE_TILE && tileSmall && ownSmall) {
#pragma unroll 16
                for (int jj = 0; jj < TSNE_TILE / 2; jj++) {
                    const float4 p = tile4[jj]; // points 2jj and 2jj+1
                    tsneRepulseSmall(xi, yi, p.x, p.y, zs, sx, sy);
                    tsneRepulseSmall(xi, yi, p.z, p.w, zs, sx, sy);
                }
            } else if (t != b) {
                for (int jj = 0; jj < cnt; jj++) {
                    tsneRepulse(xi, yi, tile[jj].x, tile[jj].y, zs, sx, sy);
                }
            } else {
                // the tile holding i: the points before it, then after it
                for (int jj = 0; jj < tid; jj++) {
                    tsneRepulse(xi, yi, tile[jj].x, tile[jj].y, zs, sx, sy);
                }
                for (int jj = tid + 1; jj < cnt; jj++) {
                    tsneRepulse(xi, yi, tile[jj].x, tile[jj].y, zs, sx, sy);
                }
            }
        }
        if (live) {
            z[i] = zs;
            rx[i] = sx;
            ry[i] = sy;
        }
    }
}

// tsne_update computes, for each row i, the attraction over the stored
// entries of row i (j == i skipped), the gradient, the gains and the update,
// and, if kl is not null, the row's KL term (entries with p > 0 and j != i).
// Z = Zp[0] is the tree sum of the repulsion's z. U and G are updated in
// place, each thread touching only its own row; Y is only read, since the
// other rows read it too, and the moved point goes to newY raw, to be
// re-centred. The attraction and KL sums are independent, so one pass over
// the entries computes both, each in its own order.
extern "C" __global__ void tsne_update(const int* __restrict__ rowPtr, const int* __restrict__ cols,
                                       const float* __restrict__ vals, const float* __restrict__ Y,
                                       float* __restrict__ U, float* __restrict__ G,
                                       const float* __restrict__ rx, const float* __restrict__ ry,
                                       const float* __restrict__ Zp, float* __restrict__ newY,
                                       float* __restrict__ kl, int n, float eta, float alpha,
                                       float exag, float minGain) {
    if (n <= 0) return;
    const float Z = Zp[0];
    const bool wantKL = kl != 0;
    FOR_EACH(li, n) {
        const int i = (int)li;
        const float xi = Y[2 * (long long)i], yi = Y[2 * (long long)i + 1];
        const int e1 = rowPtr[i + 1];
        float ax = 0.0f, ay = 0.0f, ki = 0.0f;
        for (int e = rowPtr[i]; e < e1; e++) {
            const int j = cols[e];
            if (j == i) continue; // a point has no affinity with itself
            const float p = vals[e];
            const float dx = SUB(xi, Y[2 * (long long)j]);
            const float dy = SUB(yi, Y[2 * (long long)j + 1]);
            const float q = DIV(1.0f, ADD(1.0f, ADD(MUL(dx, dx), MUL(dy, dy))));
            const float pq = MUL(p, q);
            ax = ADD(ax, MUL(pq, dx));
            ay = ADD(ay, MUL(pq, dy));
            if (wantKL && p > 0.0f) {
                ki = ADD(ki, MUL(p, strict_log(DIV(MUL(p, Z), q))));
            }
        }
        const float gx = MUL(4.0f, SUB(MUL(exag, ax), DIV(rx[i], Z)));
        const float gy = MUL(4.0f, SUB(MUL(exag, ay), DIV(ry[i], Z)));
#pragma unroll
        for (int d = 0; d < 2; d++) {
            const long long k = 2 * (long long)i + d;
            const float g = d == 0 ? gx : gy;
            float u = U[k], h = G[k];
            if ((g > 0.0f) != (u > 0.0f)) {
                h = ADD(h, 0.2f); // 0x3e4ccccd
            } else {
                h = MUL(h, 0.8f); // 0x3f4ccccd
            }
            if (h < minGain) {
                h = minGain;
            }
            u = SUB(MUL(alpha, u), MUL(eta, MUL(h, g)));
            newY[k] = ADD(Y[k], u);
            U[k] = canon(u);
            G[k] = canon(h);
        }
        if (wantKL) {
            kl[i] = ki;
        }
    }
}

// treesum writes strictmath.TreeSum of in[0], in[stride], …, in[(n-1)*stride]
// to out[0], raw: each level adds neighbours and carries an odd last element
// up unchanged. It runs in one block (other blocks return at once); the levels
// ping-pong between the two halves of scratch, at least 2*((n+1)/2) floats,
// with a barrier between levels. The shape of the tree depends on n alone.
extern "C" __global__ void treesum(const float* in, long long stride, int n, float* scratch,
                                   float* out) {
    if (blockIdx.x != 0) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    if (n <= 1) {
        if (tid == 0) out[0] = n == 1 ? in[0] : 0.0f;
        return;
    }
    const int half = (n + 1) / 2; // the first level's length, the longest
    float* src = scratch;
    float* dst = scratch + half;
    // the first level reads the strided input
    for (int p = tid; p < n / 2; p += nt) {
        src[p] = ADD(in[2 * (long long)p * stride], in[(2 * (long long)p + 1) * stride]);
    }
    if ((n & 1) && tid == 0) src[n / 2] = in[(long long)(n - 1) * stride];
    int cnt = half;
    __syncthreads();
    while (cnt > 1) {
        for (int p = tid; p < cnt / 2; p += nt) {
            dst[p] = ADD(src[2 * p], src[2 * p + 1]);
        }
        if ((cnt & 1) && tid == 0) dst[cnt / 2] = src[cnt - 1];
        cnt = (cnt + 1) / 2;
        float* t = src;
        src = dst;
        dst = t;
        __syncthreads();
    }
    if (tid == 0) out[0] = src[0];
}

// tsne_recentre subtracts each column's mean, treesum(column) / float32(n),
// from the moved points and writes the canonical result to Y.
extern "C" __global__ void tsne_recentre(const float* __restrict__ newY, const float* __restrict__ sums,
                                         float* __restrict__ Y, int n) {
    if (n <= 0) return;
    const float fn = (float)n; // exact below 2^24
    const float mean0 = DIV(sums[0], fn), mean1 = DIV(sums[1], fn);
    FOR_EACH(k, 2 * (long long)n) {
        Y[k] = canon(SUB(newY[k], (k & 1) ? mean1 : mean0));
    }
}
