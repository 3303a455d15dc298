//go:build amd64 && !purego

#include "textflag.h"

// Adam's step, eight elements a ymm register. Every lane computes its
// element with the contract's sequence of rounded operations: VMULPS,
// VADDPS, VSUBPS, VDIVPS and VSQRTPS round as their scalar forms do, and
// no multiply is fused into an add.

// optCanonNaN is the contract's NaN.
DATA optCanonNaN<>+0(SB)/4, $0x7fc00000
GLOBL optCanonNaN<>(SB), RODATA|NOPTR, $4

// func adamAVX2(w, grad, m, v *float32, n int, k *adamConsts)
//
// The factors β1, 1-β1, β2, 1-β2, c1, c2, ε and η stay in Y8 … Y15; g in
// Y0, m' in Y1, v' in Y4, the new w in Y7.
TEXT ·adamAVX2(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	VBROADCASTSS 0(AX), Y8
	VBROADCASTSS 4(AX), Y9
	VBROADCASTSS 8(AX), Y10
	VBROADCASTSS 12(AX), Y11
	VBROADCASTSS 16(AX), Y12
	VBROADCASTSS 20(AX), Y13
	VBROADCASTSS 24(AX), Y14
	VBROADCASTSS 28(AX), Y15
	SHLQ $2, CX                // n in bytes
	XORQ BX, BX

loop:
	CMPQ BX, CX
	JGE  done
	VMOVUPS (SI)(BX*1), Y0
	VMULPS  (DX)(BX*1), Y8, Y1 // β1 ⊗ m
	VMULPS  Y0, Y9, Y2         // (1 - β1) ⊗ g
	VADDPS  Y2, Y1, Y1         // m'
	VMULPS  Y0, Y0, Y3         // g ⊗ g
	VMULPS  Y3, Y11, Y3        // (1 - β2) ⊗ (g ⊗ g)
	VMULPS  (R8)(BX*1), Y10, Y4 // β2 ⊗ v
	VADDPS  Y3, Y4, Y4         // v'
	VDIVPS  Y13, Y4, Y5        // v' / c2
	VSQRTPS Y5, Y5
	VADDPS  Y14, Y5, Y5        // d = sqrt(v' / c2) + ε
	VDIVPS  Y12, Y1, Y6        // m' / c1
	VDIVPS  Y5, Y6, Y6         // (m' / c1) / d
	VMULPS  Y6, Y15, Y6        // η ⊗ …
	VMOVUPS (DI)(BX*1), Y7
	VSUBPS  Y6, Y7, Y7         // w - …
	VBROADCASTSS optCanonNaN<>(SB), Y0
	VCMPPS  $3, Y7, Y7, Y2     // unordered: NaN
	VCMPPS  $3, Y1, Y1, Y3
	VCMPPS  $3, Y4, Y4, Y5
	VBLENDVPS Y2, Y0, Y7, Y7
	VBLENDVPS Y3, Y0, Y1, Y1
	VBLENDVPS Y5, Y0, Y4, Y4
	VMOVUPS Y7, (DI)(BX*1)
	VMOVUPS Y1, (DX)(BX*1)
	VMOVUPS Y4, (R8)(BX*1)
	ADDQ $32, BX
	JMP  loop

done:
	VZEROUPPER
	RET

// func sgdAVX2(w, grad, vel *float32, n int, lr, mu float32)
//
// μ in Y14, η in Y15; v in Y0, the new w in Y2.
TEXT ·sgdAVX2(SB), NOSPLIT, $0-40
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ vel+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS lr+32(FP), Y15
	VBROADCASTSS mu+36(FP), Y14
	VBROADCASTSS optCanonNaN<>(SB), Y13
	SHLQ $2, CX                // n in bytes
	XORQ BX, BX

sgdLoop:
	CMPQ BX, CX
	JGE  sgdDone
	VMULPS  (DX)(BX*1), Y14, Y0 // μ ⊗ velocity
	VADDPS  (SI)(BX*1), Y0, Y0  // v = … + grad
	VMULPS  Y0, Y15, Y1         // η ⊗ v
	VMOVUPS (DI)(BX*1), Y2
	VSUBPS  Y1, Y2, Y2          // w - …
	VCMPPS  $3, Y0, Y0, Y3      // unordered: NaN
	VCMPPS  $3, Y2, Y2, Y4
	VBLENDVPS Y3, Y13, Y0, Y0
	VBLENDVPS Y4, Y13, Y2, Y2
	VMOVUPS Y0, (DX)(BX*1)
	VMOVUPS Y2, (DI)(BX*1)
	ADDQ $32, BX
	JMP  sgdLoop

sgdDone:
	VZEROUPPER
	RET
