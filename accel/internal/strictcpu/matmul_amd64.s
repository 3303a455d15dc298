//go:build amd64 && !purego

#include "textflag.h"

// Matmul micro-kernels. Each vector lane owns one element of C and adds its
// products in increasing k: per k, a multiply (VMULPS, rounded) and then an
// add (VADDPS, rounded), never a fused multiply-add. The accumulators start
// from C, which the caller cleared to +0 before the first block of k, and go
// back to C at the end, so blocks of k continue each sum in order.

// STEP6x16 is one k of the AVX2 kernel: A's six values at aoff(SI), B's
// sixteen at boff(DI).
#define STEP6x16(aoff, boff) \
	VMOVUPS boff(DI), Y12; \
	VMOVUPS (boff+32)(DI), Y13; \
	VBROADCASTSS (aoff+0)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y0, Y0; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y1, Y1; \
	VBROADCASTSS (aoff+4)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y2, Y2; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y3, Y3; \
	VBROADCASTSS (aoff+8)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y4, Y4; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y5, Y5; \
	VBROADCASTSS (aoff+12)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y6, Y6; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y7, Y7; \
	VBROADCASTSS (aoff+16)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y8, Y8; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y9, Y9; \
	VBROADCASTSS (aoff+20)(SI), Y14; \
	VMULPS  Y12, Y14, Y15; \
	VADDPS  Y15, Y10, Y10; \
	VMULPS  Y13, Y14, Y15; \
	VADDPS  Y15, Y11, Y11

// func mmKernel6x16AVX2(a, b, c *float32, kc, ldc int)
//
// C rows r = 0 … 5 at c + r*ldc, columns 0 … 15: row r in Y(2r) (columns
// 0-7) and Y(2r+1) (8-15). B's row of k in Y12, Y13; A[r, k] broadcast in
// Y14; the product in Y15.
TEXT ·mmKernel6x16AVX2(SB), NOSPLIT, $0-40
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ c+16(FP), DX
	MOVQ kc+24(FP), CX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8                // row stride in bytes
	LEAQ (R8)(R8*2), R10
	ADDQ DX, R10               // row 3

	VMOVUPS (DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS (DX)(R8*1), Y2
	VMOVUPS 32(DX)(R8*1), Y3
	VMOVUPS (DX)(R8*2), Y4
	VMOVUPS 32(DX)(R8*2), Y5
	VMOVUPS (R10), Y6
	VMOVUPS 32(R10), Y7
	VMOVUPS (R10)(R8*1), Y8
	VMOVUPS 32(R10)(R8*1), Y9
	VMOVUPS (R10)(R8*2), Y10
	VMOVUPS 32(R10)(R8*2), Y11

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   avx2tail

avx2loop4:
	STEP6x16(0, 0)
	STEP6x16(24, 64)
	STEP6x16(48, 128)
	STEP6x16(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  avx2loop4

avx2tail:
	ANDQ $3, CX
	JZ   avx2store

avx2loop1:
	STEP6x16(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  avx2loop1

avx2store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, (DX)(R8*1)
	VMOVUPS Y3, 32(DX)(R8*1)
	VMOVUPS Y4, (DX)(R8*2)
	VMOVUPS Y5, 32(DX)(R8*2)
	VMOVUPS Y6, (R10)
	VMOVUPS Y7, 32(R10)
	VMOVUPS Y8, (R10)(R8*1)
	VMOVUPS Y9, 32(R10)(R8*1)
	VMOVUPS Y10, (R10)(R8*2)
	VMOVUPS Y11, 32(R10)(R8*2)
	VZEROUPPER
	RET

// STEP8x32 is one k of the AVX-512 kernel: A's eight values at aoff(SI),
// B's thirty-two at boff(DI).
#define STEP8x32(aoff, boff) \
	VMOVUPS boff(DI), Z16; \
	VMOVUPS (boff+64)(DI), Z17; \
	VBROADCASTSS (aoff+0)(SI), Z20; \
	VMULPS  Z16, Z20, Z18; \
	VMULPS  Z17, Z20, Z19; \
	VADDPS  Z18, Z0, Z0; \
	VADDPS  Z19, Z1, Z1; \
	VBROADCASTSS (aoff+4)(SI), Z21; \
	VMULPS  Z16, Z21, Z22; \
	VMULPS  Z17, Z21, Z23; \
	VADDPS  Z22, Z2, Z2; \
	VADDPS  Z23, Z3, Z3; \
	VBROADCASTSS (aoff+8)(SI), Z20; \
	VMULPS  Z16, Z20, Z18; \
	VMULPS  Z17, Z20, Z19; \
	VADDPS  Z18, Z4, Z4; \
	VADDPS  Z19, Z5, Z5; \
	VBROADCASTSS (aoff+12)(SI), Z21; \
	VMULPS  Z16, Z21, Z22; \
	VMULPS  Z17, Z21, Z23; \
	VADDPS  Z22, Z6, Z6; \
	VADDPS  Z23, Z7, Z7; \
	VBROADCASTSS (aoff+16)(SI), Z20; \
	VMULPS  Z16, Z20, Z18; \
	VMULPS  Z17, Z20, Z19; \
	VADDPS  Z18, Z8, Z8; \
	VADDPS  Z19, Z9, Z9; \
	VBROADCASTSS (aoff+20)(SI), Z21; \
	VMULPS  Z16, Z21, Z22; \
	VMULPS  Z17, Z21, Z23; \
	VADDPS  Z22, Z10, Z10; \
	VADDPS  Z23, Z11, Z11; \
	VBROADCASTSS (aoff+24)(SI), Z20; \
	VMULPS  Z16, Z20, Z18; \
	VMULPS  Z17, Z20, Z19; \
	VADDPS  Z18, Z12, Z12; \
	VADDPS  Z19, Z13, Z13; \
	VBROADCASTSS (aoff+28)(SI), Z21; \
	VMULPS  Z16, Z21, Z22; \
	VMULPS  Z17, Z21, Z23; \
	VADDPS  Z22, Z14, Z14; \
	VADDPS  Z23, Z15, Z15

// func mmKernel8x32AVX512(a, b, c *float32, kc, ldc int)
//
// C rows r = 0 … 7 at c + r*ldc, columns 0 … 31: row r in Z(2r) (columns
// 0-15) and Z(2r+1) (16-31). B's row of k in Z16, Z17; A[r, k] broadcast in
// Z20 or Z21 (alternating rows); the products in Z18, Z19 or Z22, Z23.
TEXT ·mmKernel8x32AVX512(SB), NOSPLIT, $0-40
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ c+16(FP), DX
	MOVQ kc+24(FP), CX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8                // row stride in bytes
	LEAQ (R8)(R8*2), R10
	ADDQ DX, R10               // row 3
	LEAQ (R10)(R8*2), R11
	ADDQ R8, R11               // row 6

	VMOVUPS (DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS (DX)(R8*1), Z2
	VMOVUPS 64(DX)(R8*1), Z3
	VMOVUPS (DX)(R8*2), Z4
	VMOVUPS 64(DX)(R8*2), Z5
	VMOVUPS (R10), Z6
	VMOVUPS 64(R10), Z7
	VMOVUPS (R10)(R8*1), Z8
	VMOVUPS 64(R10)(R8*1), Z9
	VMOVUPS (R10)(R8*2), Z10
	VMOVUPS 64(R10)(R8*2), Z11
	VMOVUPS (R11), Z12
	VMOVUPS 64(R11), Z13
	VMOVUPS (R11)(R8*1), Z14
	VMOVUPS 64(R11)(R8*1), Z15

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   avx512tail

avx512loop4:
	STEP8x32(0, 0)
	STEP8x32(32, 128)
	STEP8x32(64, 256)
	STEP8x32(96, 384)
	ADDQ $128, SI
	ADDQ $512, DI
	DECQ BX
	JNZ  avx512loop4

avx512tail:
	ANDQ $3, CX
	JZ   avx512store

avx512loop1:
	STEP8x32(0, 0)
	ADDQ $32, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  avx512loop1

avx512store:
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, (DX)(R8*1)
	VMOVUPS Z3, 64(DX)(R8*1)
	VMOVUPS Z4, (DX)(R8*2)
	VMOVUPS Z5, 64(DX)(R8*2)
	VMOVUPS Z6, (R10)
	VMOVUPS Z7, 64(R10)
	VMOVUPS Z8, (R10)(R8*1)
	VMOVUPS Z9, 64(R10)(R8*1)
	VMOVUPS Z10, (R10)(R8*2)
	VMOVUPS Z11, 64(R10)(R8*2)
	VMOVUPS Z12, (R11)
	VMOVUPS Z13, 64(R11)
	VMOVUPS Z14, (R11)(R8*1)
	VMOVUPS Z15, 64(R11)(R8*1)
	VZEROUPPER
	RET
