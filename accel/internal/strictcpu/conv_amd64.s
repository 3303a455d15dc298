//go:build amd64 && !purego

#include "textflag.h"

// Convolution taps. Each vector lane owns one output y[i] and adds its
// products in the order (c, r, t) of the Go declaration's comment: a
// multiply (rounded), then an add (rounded), never a fused multiply-add.
//
// mode 0 adds the products to y. Modes 1 and 2 start each sum from +0
// instead, add the bias *b after the last product (mode 2 only), turn a NaN
// into the canonical NaN and store the result: the whole of an output.
//
// Registers: DI y, SI x (both at element i), CX elements left, R8 dil and R9
// rs in bytes, DX w. Per block of outputs: R13 walks the channels, R10 the
// rows of a channel, R11 the taps of a row, AX the weights (which lie in
// order, so AX only ever moves on); R14, R12 and BX count channels, rows and
// taps.

// tapMask holds 32 words of all ones, then 32 of zeros: the 32 words from
// tapMask + 4*(32-n) mask the first n lanes of a block of 32.

DATA tapMask<>+0(SB)/8, $-1
DATA tapMask<>+8(SB)/8, $-1
DATA tapMask<>+16(SB)/8, $-1
DATA tapMask<>+24(SB)/8, $-1
DATA tapMask<>+32(SB)/8, $-1
DATA tapMask<>+40(SB)/8, $-1
DATA tapMask<>+48(SB)/8, $-1
DATA tapMask<>+56(SB)/8, $-1
DATA tapMask<>+64(SB)/8, $-1
DATA tapMask<>+72(SB)/8, $-1
DATA tapMask<>+80(SB)/8, $-1
DATA tapMask<>+88(SB)/8, $-1
DATA tapMask<>+96(SB)/8, $-1
DATA tapMask<>+104(SB)/8, $-1
DATA tapMask<>+112(SB)/8, $-1
DATA tapMask<>+120(SB)/8, $-1
DATA tapMask<>+128(SB)/8, $0
DATA tapMask<>+136(SB)/8, $0
DATA tapMask<>+144(SB)/8, $0
DATA tapMask<>+152(SB)/8, $0
DATA tapMask<>+160(SB)/8, $0
DATA tapMask<>+168(SB)/8, $0
DATA tapMask<>+176(SB)/8, $0
DATA tapMask<>+184(SB)/8, $0
DATA tapMask<>+192(SB)/8, $0
DATA tapMask<>+200(SB)/8, $0
DATA tapMask<>+208(SB)/8, $0
DATA tapMask<>+216(SB)/8, $0
DATA tapMask<>+224(SB)/8, $0
DATA tapMask<>+232(SB)/8, $0
DATA tapMask<>+240(SB)/8, $0
DATA tapMask<>+248(SB)/8, $0
GLOBL tapMask<>(SB), RODATA|NOPTR, $256

// canonNaN is the contract's NaN.
DATA canonNaN<>+0(SB)/4, $0x7fc00000
GLOBL canonNaN<>(SB), RODATA|NOPTR, $4

// func tapsAVX2(y *float32, n int, x *float32, dil, rs, cs int, w *float32, kw, kh, nc, mode int, b *float32)
TEXT ·tapsAVX2(SB), NOSPLIT, $0-96
	MOVQ y+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ x+16(FP), SI
	MOVQ dil+24(FP), R8
	SHLQ $2, R8
	MOVQ rs+32(FP), R9
	SHLQ $2, R9
	MOVQ w+48(FP), DX
	MOVQ cs+40(FP), AX
	SHLQ $2, AX
	MOVQ AX, cs+40(FP)         // in bytes from here on

block32:
	CMPQ CX, $32
	JLT  tail
	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JNZ  zero32
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	JMP  sum32

zero32:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sum32:
	MOVQ SI, R13
	MOVQ DX, AX
	MOVQ nc+72(FP), R14

chan32:
	MOVQ R13, R10
	MOVQ kh+64(FP), R12

row32:
	MOVQ R10, R11
	MOVQ kw+56(FP), BX

tap32:
	VBROADCASTSS (AX), Y4
	VMULPS (R11), Y4, Y5
	VMULPS 32(R11), Y4, Y6
	VMULPS 64(R11), Y4, Y7
	VMULPS 96(R11), Y4, Y8
	VADDPS Y5, Y0, Y0
	VADDPS Y6, Y1, Y1
	VADDPS Y7, Y2, Y2
	VADDPS Y8, Y3, Y3
	ADDQ $4, AX
	ADDQ R8, R11
	DECQ BX
	JNZ  tap32
	ADDQ R9, R10
	DECQ R12
	JNZ  row32
	ADDQ cs+40(FP), R13
	DECQ R14
	JNZ  chan32

	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JZ   store32
	CMPQ R12, $1
	JEQ  canon32
	MOVQ b+88(FP), R12
	VBROADCASTSS (R12), Y4
	VADDPS Y4, Y0, Y0
	VADDPS Y4, Y1, Y1
	VADDPS Y4, Y2, Y2
	VADDPS Y4, Y3, Y3

canon32:
	VBROADCASTSS canonNaN<>(SB), Y4
	VCMPPS $3, Y0, Y0, Y5
	VCMPPS $3, Y1, Y1, Y6
	VCMPPS $3, Y2, Y2, Y7
	VCMPPS $3, Y3, Y3, Y8
	VBLENDVPS Y5, Y4, Y0, Y0
	VBLENDVPS Y6, Y4, Y1, Y1
	VBLENDVPS Y7, Y4, Y2, Y2
	VBLENDVPS Y8, Y4, Y3, Y3

store32:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, DI
	ADDQ $128, SI
	SUBQ $32, CX
	JMP  block32

	// The last 1 … 31 outputs: the same with masked loads and stores,
	// which neither read nor write past the n-th element. Masked-off lanes
	// compute on zeros and are never stored.
tail:
	TESTQ CX, CX
	JZ    done
	LEAQ  tapMask<>+128(SB), R10
	MOVQ  CX, R11
	SHLQ  $2, R11
	SUBQ  R11, R10
	VMOVDQU (R10), Y12
	VMOVDQU 32(R10), Y13
	VMOVDQU 64(R10), Y14
	VMOVDQU 96(R10), Y15
	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JNZ  zeroTail
	VMASKMOVPS (DI), Y12, Y0
	VMASKMOVPS 32(DI), Y13, Y1
	VMASKMOVPS 64(DI), Y14, Y2
	VMASKMOVPS 96(DI), Y15, Y3
	JMP  sumTail

zeroTail:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sumTail:
	MOVQ SI, R13
	MOVQ DX, AX
	MOVQ nc+72(FP), R14

chanTail:
	MOVQ R13, R10
	MOVQ kh+64(FP), R12

rowTail:
	MOVQ R10, R11
	MOVQ kw+56(FP), BX

tapTail:
	VBROADCASTSS (AX), Y4
	VMASKMOVPS (R11), Y12, Y5
	VMASKMOVPS 32(R11), Y13, Y6
	VMASKMOVPS 64(R11), Y14, Y7
	VMASKMOVPS 96(R11), Y15, Y8
	VMULPS Y4, Y5, Y5
	VMULPS Y4, Y6, Y6
	VMULPS Y4, Y7, Y7
	VMULPS Y4, Y8, Y8
	VADDPS Y5, Y0, Y0
	VADDPS Y6, Y1, Y1
	VADDPS Y7, Y2, Y2
	VADDPS Y8, Y3, Y3
	ADDQ $4, AX
	ADDQ R8, R11
	DECQ BX
	JNZ  tapTail
	ADDQ R9, R10
	DECQ R12
	JNZ  rowTail
	ADDQ cs+40(FP), R13
	DECQ R14
	JNZ  chanTail

	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JZ   storeTail
	CMPQ R12, $1
	JEQ  canonTail
	MOVQ b+88(FP), R12
	VBROADCASTSS (R12), Y4
	VADDPS Y4, Y0, Y0
	VADDPS Y4, Y1, Y1
	VADDPS Y4, Y2, Y2
	VADDPS Y4, Y3, Y3

canonTail:
	VBROADCASTSS canonNaN<>(SB), Y4
	VCMPPS $3, Y0, Y0, Y5
	VCMPPS $3, Y1, Y1, Y6
	VCMPPS $3, Y2, Y2, Y7
	VCMPPS $3, Y3, Y3, Y8
	VBLENDVPS Y5, Y4, Y0, Y0
	VBLENDVPS Y6, Y4, Y1, Y1
	VBLENDVPS Y7, Y4, Y2, Y2
	VBLENDVPS Y8, Y4, Y3, Y3

storeTail:
	VMASKMOVPS Y0, Y12, (DI)
	VMASKMOVPS Y1, Y13, 32(DI)
	VMASKMOVPS Y2, Y14, 64(DI)
	VMASKMOVPS Y3, Y15, 96(DI)

done:
	VZEROUPPER
	RET

// func tapsAVX512(y *float32, n int, x *float32, dil, rs, cs int, w *float32, kw, kh, nc, mode int, b *float32)
//
// n is a multiple of 64; the caller hands a shorter tail to tapsAVX2.
TEXT ·tapsAVX512(SB), NOSPLIT, $0-96
	MOVQ y+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ x+16(FP), SI
	MOVQ dil+24(FP), R8
	SHLQ $2, R8
	MOVQ rs+32(FP), R9
	SHLQ $2, R9
	MOVQ w+48(FP), DX
	MOVQ cs+40(FP), AX
	SHLQ $2, AX
	MOVQ AX, cs+40(FP)         // in bytes from here on

block64:
	CMPQ CX, $64
	JLT  done
	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JNZ  zero64
	VMOVUPS (DI), Z0
	VMOVUPS 64(DI), Z1
	VMOVUPS 128(DI), Z2
	VMOVUPS 192(DI), Z3
	JMP  sum64

zero64:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

sum64:
	MOVQ SI, R13
	MOVQ DX, AX
	MOVQ nc+72(FP), R14

chan64:
	MOVQ R13, R10
	MOVQ kh+64(FP), R12

row64:
	MOVQ R10, R11
	MOVQ kw+56(FP), BX

tap64:
	VBROADCASTSS (AX), Z4
	VMULPS (R11), Z4, Z5
	VMULPS 64(R11), Z4, Z6
	VMULPS 128(R11), Z4, Z7
	VMULPS 192(R11), Z4, Z8
	VADDPS Z5, Z0, Z0
	VADDPS Z6, Z1, Z1
	VADDPS Z7, Z2, Z2
	VADDPS Z8, Z3, Z3
	ADDQ $4, AX
	ADDQ R8, R11
	DECQ BX
	JNZ  tap64
	ADDQ R9, R10
	DECQ R12
	JNZ  row64
	ADDQ cs+40(FP), R13
	DECQ R14
	JNZ  chan64

	MOVQ mode+80(FP), R12
	TESTQ R12, R12
	JZ   store64
	CMPQ R12, $1
	JEQ  canon64
	MOVQ b+88(FP), R12
	VBROADCASTSS (R12), Z4
	VADDPS Z4, Z0, Z0
	VADDPS Z4, Z1, Z1
	VADDPS Z4, Z2, Z2
	VADDPS Z4, Z3, Z3

	// A NaN lane (unordered with itself) takes the canonical NaN.
canon64:
	VBROADCASTSS canonNaN<>(SB), Z4
	VCMPPS $3, Z0, Z0, K1
	VCMPPS $3, Z1, Z1, K2
	VCMPPS $3, Z2, Z2, K3
	VCMPPS $3, Z3, Z3, K4
	VMOVUPS Z4, K1, Z0
	VMOVUPS Z4, K2, Z1
	VMOVUPS Z4, K3, Z2
	VMOVUPS Z4, K4, Z3

store64:
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ $256, DI
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  block64

done:
	VZEROUPPER
	RET
