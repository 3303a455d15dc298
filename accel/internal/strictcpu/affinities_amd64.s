//go:build amd64 && !purego

#include "textflag.h"

// The distance tiles of tsne_affinities. Each vector lane owns the distance
// of one pair (a row of a against a column of bt) and adds its features'
// squared differences in increasing t: per t, a subtraction (VSUBPS), a
// multiply (VMULPS) and an add (VADDPS), each rounded, never a fused
// multiply-add. The accumulators start from acc and go back to it, so pieces
// of the features continue each sum in order.
//
// func knnTileAVX2(acc, a, bt *float32, nt, rows, cols int)
// func knnTileAVX512(acc, a, bt *float32, nt, rows, cols int)
//
// For r < rows and c < cols: acc[r*cols+c] += Σ_t (a[r*nt+t] - bt[t*cols+c])²,
// t = 0 … nt-1 in order. rows is a multiple of 4, cols of 16 (AVX2) or 32
// (AVX-512), nt >= 1.
//
// Registers: DI acc and SI a at the current four rows, DX bt, CX nt, R8 the
// rows left, R10 a row of acc or bt in bytes, R11 a row of a in bytes and R12
// three of them, BX the column in bytes; in the loop over t, AX counts, R9
// walks a and R13 walks bt. Y0 … Y7 (Z0 … Z7) hold four rows by two vectors
// of columns.

// KNNSTEP is one row of one t: x broadcast from the row, minus the two
// vectors of columns b0 and b1, squared and added to s0 and s1.
#define KNNSTEP(mem, x, b0, b1, s0, s1, t0, t1) \
	VBROADCASTSS mem, x; \
	VSUBPS  b0, x, t0; \
	VMULPS  t0, t0, t0; \
	VADDPS  t0, s0, s0; \
	VSUBPS  b1, x, t1; \
	VMULPS  t1, t1, t1; \
	VADDPS  t1, s1, s1

TEXT ·knnTileAVX2(SB), NOSPLIT, $0-48
	MOVQ acc+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DX
	MOVQ nt+24(FP), CX
	MOVQ rows+32(FP), R8
	MOVQ cols+40(FP), R10
	SHLQ $2, R10
	MOVQ CX, R11
	SHLQ $2, R11
	LEAQ (R11)(R11*2), R12

avx2rows:
	CMPQ R8, $0
	JLE  avx2done
	XORQ BX, BX

avx2cols:
	CMPQ BX, R10
	JGE  avx2next
	LEAQ (DI)(BX*1), AX
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS (AX)(R10*1), Y2
	VMOVUPS 32(AX)(R10*1), Y3
	VMOVUPS (AX)(R10*2), Y4
	VMOVUPS 32(AX)(R10*2), Y5
	LEAQ (AX)(R10*2), R9
	VMOVUPS (R9)(R10*1), Y6
	VMOVUPS 32(R9)(R10*1), Y7
	MOVQ SI, R9
	LEAQ (DX)(BX*1), R13
	MOVQ CX, AX

avx2t:
	VMOVUPS (R13), Y8
	VMOVUPS 32(R13), Y9
	KNNSTEP((R9), Y10, Y8, Y9, Y0, Y1, Y14, Y15)
	KNNSTEP((R9)(R11*1), Y11, Y8, Y9, Y2, Y3, Y14, Y15)
	KNNSTEP((R9)(R11*2), Y12, Y8, Y9, Y4, Y5, Y14, Y15)
	KNNSTEP((R9)(R12*1), Y13, Y8, Y9, Y6, Y7, Y14, Y15)
	ADDQ $4, R9
	ADDQ R10, R13
	DECQ AX
	JNZ  avx2t

	LEAQ (DI)(BX*1), AX
	VMOVUPS Y0, (AX)
	VMOVUPS Y1, 32(AX)
	VMOVUPS Y2, (AX)(R10*1)
	VMOVUPS Y3, 32(AX)(R10*1)
	VMOVUPS Y4, (AX)(R10*2)
	VMOVUPS Y5, 32(AX)(R10*2)
	LEAQ (AX)(R10*2), R9
	VMOVUPS Y6, (R9)(R10*1)
	VMOVUPS Y7, 32(R9)(R10*1)
	ADDQ $64, BX
	JMP  avx2cols

avx2next:
	LEAQ (DI)(R10*4), DI
	LEAQ (SI)(R11*4), SI
	SUBQ $4, R8
	JMP  avx2rows

avx2done:
	VZEROUPPER
	RET

TEXT ·knnTileAVX512(SB), NOSPLIT, $0-48
	MOVQ acc+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DX
	MOVQ nt+24(FP), CX
	MOVQ rows+32(FP), R8
	MOVQ cols+40(FP), R10
	SHLQ $2, R10
	MOVQ CX, R11
	SHLQ $2, R11
	LEAQ (R11)(R11*2), R12

avx512rows:
	CMPQ R8, $0
	JLE  avx512done
	XORQ BX, BX

avx512cols:
	CMPQ BX, R10
	JGE  avx512next
	LEAQ (DI)(BX*1), AX
	VMOVUPS (AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS (AX)(R10*1), Z2
	VMOVUPS 64(AX)(R10*1), Z3
	VMOVUPS (AX)(R10*2), Z4
	VMOVUPS 64(AX)(R10*2), Z5
	LEAQ (AX)(R10*2), R9
	VMOVUPS (R9)(R10*1), Z6
	VMOVUPS 64(R9)(R10*1), Z7
	MOVQ SI, R9
	LEAQ (DX)(BX*1), R13
	MOVQ CX, AX

avx512t:
	VMOVUPS (R13), Z8
	VMOVUPS 64(R13), Z9
	KNNSTEP((R9), Z10, Z8, Z9, Z0, Z1, Z14, Z15)
	KNNSTEP((R9)(R11*1), Z11, Z8, Z9, Z2, Z3, Z16, Z17)
	KNNSTEP((R9)(R11*2), Z12, Z8, Z9, Z4, Z5, Z18, Z19)
	KNNSTEP((R9)(R12*1), Z13, Z8, Z9, Z6, Z7, Z20, Z21)
	ADDQ $4, R9
	ADDQ R10, R13
	DECQ AX
	JNZ  avx512t

	LEAQ (DI)(BX*1), AX
	VMOVUPS Z0, (AX)
	VMOVUPS Z1, 64(AX)
	VMOVUPS Z2, (AX)(R10*1)
	VMOVUPS Z3, 64(AX)(R10*1)
	VMOVUPS Z4, (AX)(R10*2)
	VMOVUPS Z5, 64(AX)(R10*2)
	LEAQ (AX)(R10*2), R9
	VMOVUPS Z6, (R9)(R10*1)
	VMOVUPS Z7, 64(R9)(R10*1)
	ADDQ $128, BX
	JMP  avx512cols

avx512next:
	LEAQ (DI)(R10*4), DI
	LEAQ (SI)(R11*4), SI
	SUBQ $4, R8
	JMP  avx512rows

avx512done:
	VZEROUPPER
	RET
