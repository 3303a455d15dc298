//go:build amd64 && !purego

#include "textflag.h"

// relu and clip, eight elements a ymm register, with the portable loops'
// comparisons and selections lane by lane: ordered, quiet comparisons
// (VCMPPS with the _OQ predicates, false where either side is NaN, as Go's
// < and > are), selections by VANDPS and VBLENDVPS, never VMAXPS or VMINPS,
// whose results for NaNs and zeros of either sign depend on the order of
// their operands. Every NaN input gives the canonical NaN.
//
// VCMPPS $p, b, a, m sets lane i of m to all ones where a[i] p b[i];
// VBLENDVPS m, s, t, d sets d[i] to s[i] where m[i] is negative, else t[i].

// elemCanonNaN is the contract's NaN.
DATA elemCanonNaN<>+0(SB)/4, $0x7fc00000
GLOBL elemCanonNaN<>(SB), RODATA|NOPTR, $4

// func reluAVX2(y, x *float32, n int)
//
// y = x where x > 0, else +0; the canonical NaN where x is NaN. Y15 holds
// +0 and Y14 the canonical NaN; x in Y0.
TEXT ·reluAVX2(SB), NOSPLIT, $0-24
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VXORPS Y15, Y15, Y15
	VBROADCASTSS elemCanonNaN<>(SB), Y14
	SHLQ $2, CX                // n in bytes
	XORQ BX, BX

reluLoop:
	CMPQ BX, CX
	JGE  reluDone
	VMOVUPS (SI)(BX*1), Y0
	VCMPPS  $0x1e, Y15, Y0, Y1 // x > +0, ordered: GT_OQ
	VANDPS  Y0, Y1, Y1         // x there, +0 elsewhere
	VCMPPS  $3, Y0, Y0, Y2     // unordered: NaN
	VBLENDVPS Y2, Y14, Y1, Y1
	VMOVUPS Y1, (DI)(BX*1)
	ADDQ $32, BX
	JMP  reluLoop

reluDone:
	VZEROUPPER
	RET

// func clipAVX2(y, x *float32, n int, lo, hi float32)
//
// t = lo where x < lo, else x; y = hi where t > hi, else t; the canonical
// NaN where x is NaN. lo in Y15, hi in Y14, the canonical NaN in Y13; x in
// Y0, t and y in Y1.
TEXT ·clipAVX2(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS lo+24(FP), Y15
	VBROADCASTSS hi+28(FP), Y14
	VBROADCASTSS elemCanonNaN<>(SB), Y13
	SHLQ $2, CX                // n in bytes
	XORQ BX, BX

clipLoop:
	CMPQ BX, CX
	JGE  clipDone
	VMOVUPS (SI)(BX*1), Y0
	VCMPPS  $0x11, Y15, Y0, Y2 // x < lo, ordered: LT_OQ
	VBLENDVPS Y2, Y15, Y0, Y1  // t
	VCMPPS  $0x1e, Y14, Y1, Y3 // t > hi, ordered: GT_OQ
	VBLENDVPS Y3, Y14, Y1, Y1  // y
	VCMPPS  $3, Y0, Y0, Y4     // unordered: NaN
	VBLENDVPS Y4, Y13, Y1, Y1
	VMOVUPS Y1, (DI)(BX*1)
	ADDQ $32, BX
	JMP  clipLoop

clipDone:
	VZEROUPPER
	RET
