package cuda

import "fmt"

// cuBLAS constants.
const (
	cublasOpN = 0
	cublasOpT = 1

	cublasDefaultMath    = 0
	cublasPedanticMath   = 2 // FP32 on FP32 units, no tensor-core shortcuts
	cublasTF32TensorMath = 3
)

// cublasAPI is the part of cuBLAS the fast matmul calls.
type cublasAPI struct {
	lib *library

	cublasCreate          func(h *uintptr) int32
	cublasDestroy         func(h uintptr) int32
	cublasSetStream       func(h uintptr, stream uintptr) int32
	cublasSetMathMode     func(h uintptr, mode int32) int32
	cublasGetStatusString func(status int32) string
	cublasGetVersion      func(h uintptr, v *int32) int32
	// cublasSgemm computes column-major C = alpha·op(A)·op(B) + beta·C.
	cublasSgemm func(h uintptr, transa, transb int32, m, n, k int32,
		alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32
}

func loadCUBLAS(dirs []string) (*cublasAPI, error) {
	// cuBLAS needs cuBLASLt; loading it first from the same place keeps the
	// dynamic loader from looking for it anywhere else.
	if _, err := openLibrary("cuBLASLt", []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}, dirs); err != nil {
		return nil, err
	}
	lib, err := openLibrary("cuBLAS", []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}, dirs)
	if err != nil {
		return nil, err
	}
	c := &cublasAPI{lib: lib}
	err = lib.bindAll(map[string]any{
		"cublasCreate_v2":       &c.cublasCreate,
		"cublasDestroy_v2":      &c.cublasDestroy,
		"cublasSetStream_v2":    &c.cublasSetStream,
		"cublasSetMathMode":     &c.cublasSetMathMode,
		"cublasGetStatusString": &c.cublasGetStatusString,
		"cublasGetVersion_v2":   &c.cublasGetVersion,
		"cublasSgemm_v2":        &c.cublasSgemm,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cublasAPI) check(call string, status int32) error {
	if status == 0 {
		return nil
	}
	return fmt.Errorf("%s failed: %s (%d)", call, c.cublasGetStatusString(status), status)
}

// sgemmRowMajor computes the row-major C[M,N] = op(A)·op(B) with cuBLAS,
// which is column-major: a row-major matrix is its transpose in column-major
// order, so it computes Cᵀ = op(B)ᵀ·op(A)ᵀ, passing B first.
func (c *cublasAPI) sgemmRowMajor(h uintptr, m, n, k int, a, b, out uint64, transA, transB bool) error {
	alpha, beta := float32(1), float32(0)
	opA, lda := int32(cublasOpN), int32(k) // A stored [M,K]: column-major K×M, ld K
	if transA {
		opA, lda = cublasOpT, int32(m) // A stored [K,M]: column-major M×K, ld M
	}
	opB, ldb := int32(cublasOpN), int32(n) // B stored [K,N]: column-major N×K, ld N
	if transB {
		opB, ldb = cublasOpT, int32(k) // B stored [N,K]: column-major K×N, ld K
	}
	return c.check("cublasSgemm", c.cublasSgemm(h, opB, opA, int32(n), int32(m), int32(k),
		&alpha, b, ldb, a, lda, &beta, out, int32(n)))
}
