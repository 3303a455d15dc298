/*
 * accelnode.h: the accel guest ABI, version 1, for C guests built with
 * clang --target=wasm32-wasi (wasi-libc). It follows docs/abi.md of
 * accelnode as of the 2026-12-05 additions (actors, t-SNE on real data,
 * training): copy it into your guest; it needs nothing but <stdint.h> and
 * <stddef.h>.
 *
 *   clang --target=wasm32-wasi -O2 -o guest.wasm guest.c
 *   accelnode run guest.wasm
 *
 * Every import returns an errno (ACCEL_OK is 0). After a failed call,
 * accel_last_error() copies the node's sentence saying what was wrong.
 * Tensors are handles (uint32_t, never 0) to data the node keeps on its
 * backend, possibly in GPU memory: data moves only in accel_tensor_write
 * and accel_tensor_read. Every multi-byte value is little-endian, as
 * wasm32 is.
 *
 * The raw imports are accel_raw_<name>; the accel_<name> wrappers below
 * take C types, and those that create a tensor return its handle through
 * their last argument.
 */
#ifndef ACCELNODE_H
#define ACCELNODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ACCEL_ABI_VERSION 1

/* Errnos (docs/abi.md, "Errnos"). */
typedef uint32_t accel_errno_t;
#define ACCEL_OK 0
#define ACCEL_EBADHANDLE 1   /* handle 0, never issued to this guest, or freed */
#define ACCEL_EFAULT 2       /* a pointer and length reach outside guest memory */
#define ACCEL_EINVAL 3       /* an invalid argument */
#define ACCEL_ESHAPE 4       /* shapes do not fit, or a range leaves the tensor */
#define ACCEL_EOVERFLOW 5    /* a size product overflows */
#define ACCEL_EUNSUPPORTED 6 /* the backend or mode cannot serve the call */
#define ACCEL_ENOMEM 7       /* over the tensor-memory limit, or the device is full */
#define ACCEL_EBUDGET 8      /* the compute budget cannot cover the call */
#define ACCEL_ELIMIT 9       /* too many live tensors, or a reply over 16 MiB */
#define ACCEL_ECANCELED 10   /* the deadline passed during the call */
#define ACCEL_EDEVICE 11     /* the backend or device failed */
#define ACCEL_EINTERNAL 12   /* a bug in the node */
#define ACCEL_ETOOSMALL 13   /* the buffer is too small; the needed length was written */
#define ACCEL_ENOENT 14      /* no model by that name or hash */

/* Element types. */
#define ACCEL_F32 1
#define ACCEL_I32 2

#define ACCEL_MAX_RANK 8

/* matmul flags. */
#define ACCEL_TRANS_A 1u /* a is stored [K, M] */
#define ACCEL_TRANS_B 2u /* b is stored [N, K] */

/* tensor_info's struct. */
typedef struct {
	uint32_t dtype;
	uint32_t rank;
	uint32_t dims[ACCEL_MAX_RANK]; /* unused entries 0 */
} accel_tensor_info_t;

/* conv2d's parameters: a zero-filled struct is a stride-1, unpadded,
 * ungrouped convolution (zero strides, dilations and groups mean 1). */
typedef struct {
	uint32_t stride_h, stride_w;
	uint32_t pad_top, pad_left, pad_bottom, pad_right;
	uint32_t dilation_h, dilation_w;
	uint32_t groups;
} accel_conv2d_params_t;

/* maxpool2d's parameters (zero strides mean 1). */
typedef struct {
	uint32_t kernel_h, kernel_w;
	uint32_t stride_h, stride_w;
	uint32_t pad_top, pad_left, pad_bottom, pad_right;
} accel_pool2d_params_t;

#define ACCEL_IMPORT(name) __attribute__((import_module("accel"), import_name(name)))

/* The raw imports, as docs/abi.md gives them. */
ACCEL_IMPORT("tensor_create") accel_errno_t accel_raw_tensor_create(uint32_t dtype, const uint32_t *shape, uint32_t rank, uint32_t *out);
ACCEL_IMPORT("tensor_info") accel_errno_t accel_raw_tensor_info(uint32_t h, accel_tensor_info_t *info);
ACCEL_IMPORT("tensor_write") accel_errno_t accel_raw_tensor_write(uint32_t h, uint32_t first, const void *src, uint32_t count);
ACCEL_IMPORT("tensor_read") accel_errno_t accel_raw_tensor_read(uint32_t h, uint32_t first, void *dst, uint32_t count);
ACCEL_IMPORT("tensor_reshape") accel_errno_t accel_raw_tensor_reshape(uint32_t h, const uint32_t *shape, uint32_t rank);
ACCEL_IMPORT("tensor_free") accel_errno_t accel_raw_tensor_free(uint32_t h);
ACCEL_IMPORT("matmul") accel_errno_t accel_raw_matmul(uint32_t a, uint32_t b, uint32_t flags, uint32_t *out);
ACCEL_IMPORT("conv2d") accel_errno_t accel_raw_conv2d(uint32_t x, uint32_t w, uint32_t bias, const accel_conv2d_params_t *p, uint32_t *out);
ACCEL_IMPORT("add_bias") accel_errno_t accel_raw_add_bias(uint32_t x, uint32_t bias, uint32_t axis, uint32_t *out);
ACCEL_IMPORT("add") accel_errno_t accel_raw_add(uint32_t a, uint32_t b, uint32_t *out);
ACCEL_IMPORT("relu") accel_errno_t accel_raw_relu(uint32_t x, uint32_t *out);
ACCEL_IMPORT("maxpool2d") accel_errno_t accel_raw_maxpool2d(uint32_t x, const accel_pool2d_params_t *p, uint32_t *out);
ACCEL_IMPORT("softmax") accel_errno_t accel_raw_softmax(uint32_t x, uint32_t *out);
ACCEL_IMPORT("model_open") accel_errno_t accel_raw_model_open(const char *name, uint32_t name_len, uint32_t *out);
ACCEL_IMPORT("model_info") accel_errno_t accel_raw_model_info(uint32_t model, char *buf, uint32_t buf_len, uint32_t *out_len);
ACCEL_IMPORT("model_run") accel_errno_t accel_raw_model_run(uint32_t model, const uint32_t *inputs, uint32_t n_inputs, uint32_t *outputs, uint32_t n_outputs);
ACCEL_IMPORT("info") accel_errno_t accel_raw_info(char *buf, uint32_t buf_len, uint32_t *out_len);
ACCEL_IMPORT("units") accel_errno_t accel_raw_units(uint64_t out[2]);
ACCEL_IMPORT("last_error") accel_errno_t accel_raw_last_error(char *buf, uint32_t buf_len, uint32_t *out_len);

#undef ACCEL_IMPORT

/* accel_errno_name returns the errno's name, "EINVAL" and the like. */
static inline const char *accel_errno_name(accel_errno_t e) {
	static const char *const names[] = {
	    "OK", "EBADHANDLE", "EFAULT", "EINVAL", "ESHAPE", "EOVERFLOW", "EUNSUPPORTED", "ENOMEM",
	    "EBUDGET", "ELIMIT", "ECANCELED", "EDEVICE", "EINTERNAL", "ETOOSMALL", "ENOENT",
	};
	return e < sizeof names / sizeof names[0] ? names[e] : "unknown errno";
}

/* accel_text runs info, last_error or the like: it copies at most n-1 bytes
 * of the text into buf, always terminated, and returns the errno (ACCEL_OK
 * when the whole text fit). */
static inline accel_errno_t accel_text_(accel_errno_t (*f)(char *, uint32_t, uint32_t *), char *buf, size_t n) {
	uint32_t len = 0;
	if (n == 0)
		return ACCEL_ETOOSMALL;
	accel_errno_t e = f(buf, (uint32_t)(n - 1), &len);
	buf[e == ACCEL_OK && len < n ? len : 0] = 0;
	return e;
}

/* accel_last_error copies the node's explanation of the most recent failed
 * call into buf (empty after a success). */
static inline accel_errno_t accel_last_error(char *buf, size_t n) { return accel_text_(accel_raw_last_error, buf, n); }

/* accel_info copies the node's JSON description ({"abi":1,"backend":...})
 * into buf. */
static inline accel_errno_t accel_info(char *buf, size_t n) { return accel_text_(accel_raw_info, buf, n); }

/* accel_tensor_create creates a zero-filled tensor of shape[0..rank). */
static inline accel_errno_t accel_tensor_create(uint32_t dtype, const uint32_t *shape, uint32_t rank, uint32_t *out) {
	return accel_raw_tensor_create(dtype, shape, rank, out);
}

/* accel_tensor_from_f32 creates an f32 tensor holding data, which holds as
 * many values as the shape has elements. */
static inline accel_errno_t accel_tensor_from_f32(const float *data, const uint32_t *shape, uint32_t rank, uint32_t *out) {
	uint32_t h, n = 1;
	for (uint32_t i = 0; i < rank; i++)
		n *= shape[i];
	accel_errno_t e = accel_raw_tensor_create(ACCEL_F32, shape, rank, &h);
	if (e)
		return e;
	if ((e = accel_raw_tensor_write(h, 0, data, n))) {
		accel_raw_tensor_free(h);
		return e;
	}
	*out = h;
	return ACCEL_OK;
}

static inline accel_errno_t accel_tensor_info(uint32_t h, accel_tensor_info_t *info) { return accel_raw_tensor_info(h, info); }

/* accel_tensor_write copies count elements from src into the tensor from
 * element first; accel_tensor_read copies them out. */
static inline accel_errno_t accel_tensor_write(uint32_t h, uint32_t first, const void *src, uint32_t count) {
	return accel_raw_tensor_write(h, first, src, count);
}
static inline accel_errno_t accel_tensor_read(uint32_t h, uint32_t first, void *dst, uint32_t count) {
	return accel_raw_tensor_read(h, first, dst, count);
}

/* accel_tensor_reshape gives the tensor a shape with as many elements. */
static inline accel_errno_t accel_tensor_reshape(uint32_t h, const uint32_t *shape, uint32_t rank) {
	return accel_raw_tensor_reshape(h, shape, rank);
}

/* accel_tensor_free frees the tensor; a handle of 0 is ignored. */
static inline accel_errno_t accel_tensor_free(uint32_t h) { return h ? accel_raw_tensor_free(h) : ACCEL_OK; }

/* C[M,N] = A[M,K] · B[K,N]; ACCEL_TRANS_A and ACCEL_TRANS_B in flags say
 * that a is stored [K,M] or b [N,K]. */
static inline accel_errno_t accel_matmul(uint32_t a, uint32_t b, uint32_t flags, uint32_t *out) {
	return accel_raw_matmul(a, b, flags, out);
}

/* conv2d of x[N,C,H,W] with w[OC,C/groups,KH,KW], plus bias[OC] unless bias
 * is 0; p may be NULL for a plain convolution. */
static inline accel_errno_t accel_conv2d(uint32_t x, uint32_t w, uint32_t bias, const accel_conv2d_params_t *p, uint32_t *out) {
	accel_conv2d_params_t zero = {0};
	return accel_raw_conv2d(x, w, bias, p ? p : &zero, out);
}

/* y = x + bias, bias broadcast along axis (1 for [batch, features] and for
 * NCHW). */
static inline accel_errno_t accel_add_bias(uint32_t x, uint32_t bias, uint32_t axis, uint32_t *out) {
	return accel_raw_add_bias(x, bias, axis, out);
}

/* y = a + b elementwise, for two tensors of one shape. */
static inline accel_errno_t accel_add(uint32_t a, uint32_t b, uint32_t *out) { return accel_raw_add(a, b, out); }

/* y = max(x, +0). */
static inline accel_errno_t accel_relu(uint32_t x, uint32_t *out) { return accel_raw_relu(x, out); }

/* The window maxima of x[N,C,H,W]. */
static inline accel_errno_t accel_maxpool2d(uint32_t x, const accel_pool2d_params_t *p, uint32_t *out) {
	return accel_raw_maxpool2d(x, p, out);
}

/* Softmax along the last axis. */
static inline accel_errno_t accel_softmax(uint32_t x, uint32_t *out) { return accel_raw_softmax(x, out); }

/* accel_model_open looks up a model the node holds by name, or by sha256. */
static inline accel_errno_t accel_model_open(const char *name, uint32_t *out) {
	uint32_t n = 0;
	while (name[n])
		n++;
	return accel_raw_model_open(name, n, out);
}

/* accel_model_info copies the model's JSON description into buf. */
static inline accel_errno_t accel_model_info(uint32_t model, char *buf, size_t n) {
	uint32_t len = 0;
	if (n == 0)
		return ACCEL_ETOOSMALL;
	accel_errno_t e = accel_raw_model_info(model, buf, (uint32_t)(n - 1), &len);
	buf[e == ACCEL_OK && len < n ? len : 0] = 0;
	return e;
}

/* accel_model_run runs the model on n_inputs tensors, in the order of its
 * inputs, and writes n_outputs new handles, in the order of its outputs. */
static inline accel_errno_t accel_model_run(uint32_t model, const uint32_t *inputs, uint32_t n_inputs, uint32_t *outputs, uint32_t n_outputs) {
	return accel_raw_model_run(model, inputs, n_inputs, outputs, n_outputs);
}

/* accel_units writes the compute units used so far and the budget (0:
 * unlimited). */
static inline accel_errno_t accel_units(uint64_t *used, uint64_t *budget) {
	uint64_t u[2] = {0, 0};
	accel_errno_t e = accel_raw_units(u);
	*used = u[0];
	*budget = u[1];
	return e;
}

#ifdef __cplusplus
}
#endif

#endif /* ACCELNODE_H */
