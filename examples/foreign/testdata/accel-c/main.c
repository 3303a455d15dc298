/*
 * A guest of examples/foreign that exercises hostfn/guest/c/accelnode.h:
 * a matmul, a conv2d with bias, relu and maxpool2d, add_bias and softmax,
 * a refused call and its last_error sentence, and model_run on the model
 * "mnist" when the node holds it. It prints each result.
 */
#include <stdio.h>
#include <string.h>

#include "accelnode.h"

#define CHECK(call)                                                                  \
	do {                                                                         \
		accel_errno_t e_ = (call);                                           \
		if (e_) {                                                            \
			char msg_[256];                                              \
			accel_last_error(msg_, sizeof msg_);                         \
			printf("%s failed: %s: %s\n", #call, accel_errno_name(e_), msg_); \
			return 1;                                                    \
		}                                                                    \
	} while (0)

int main(void) {
	uint32_t s2[2] = {2, 2}, a, c;
	float x[4] = {1, 2, 3, 4}, y[4];
	CHECK(accel_tensor_from_f32(x, s2, 2, &a));
	CHECK(accel_matmul(a, a, 0, &c));
	CHECK(accel_tensor_read(c, 0, y, 4));
	printf("matmul %g %g %g %g\n", y[0], y[1], y[2], y[3]);

	/* x 1×1×4×4 = 0..15, w 1×1×2×2 of ones, bias -12: conv sums of 2×2
	 * windows less 12, relu, 3×3 → maxpool 2 stride 1 → 2×2. */
	uint32_t sx[4] = {1, 1, 4, 4}, sw[4] = {1, 1, 2, 2}, sb[1] = {1}, xt, wt, bt, conv, r, p;
	float img[16], ones[4] = {1, 1, 1, 1}, bias[1] = {-12}, out[4];
	for (int i = 0; i < 16; i++)
		img[i] = (float)i;
	CHECK(accel_tensor_from_f32(img, sx, 4, &xt));
	CHECK(accel_tensor_from_f32(ones, sw, 4, &wt));
	CHECK(accel_tensor_from_f32(bias, sb, 1, &bt));
	CHECK(accel_conv2d(xt, wt, bt, NULL, &conv));
	CHECK(accel_relu(conv, &r));
	accel_pool2d_params_t pp = {.kernel_h = 2, .kernel_w = 2};
	CHECK(accel_maxpool2d(r, &pp, &p));
	accel_tensor_info_t info;
	CHECK(accel_tensor_info(p, &info));
	CHECK(accel_tensor_read(p, 0, out, 4));
	printf("pool rank %u dims %ux%ux%ux%u: %g %g %g %g\n", (unsigned)info.rank, (unsigned)info.dims[0], (unsigned)info.dims[1],
	       (unsigned)info.dims[2], (unsigned)info.dims[3], out[0], out[1], out[2], out[3]);

	uint32_t flat[2] = {1, 4}, b4[1] = {4}, bh, ab, sm;
	float bv[4] = {0, 0, 0, 1e-3f}, prob[4];
	CHECK(accel_tensor_reshape(p, flat, 2));
	CHECK(accel_tensor_from_f32(bv, b4, 1, &bh));
	CHECK(accel_add_bias(p, bh, 1, &ab));
	CHECK(accel_softmax(ab, &sm));
	CHECK(accel_tensor_read(sm, 0, prob, 4));
	printf("softmax %.6f %.6f %.6f %.6f\n", prob[0], prob[1], prob[2], prob[3]);

	uint32_t bad;
	accel_errno_t e = accel_matmul(a, xt, 0, &bad);
	char msg[256];
	accel_last_error(msg, sizeof msg);
	printf("refused %s: %s\n", accel_errno_name(e), msg);

	uint32_t m;
	if ((e = accel_model_open("mnist", &m)) == ACCEL_OK) {
		uint32_t sd[4] = {1, 1, 28, 28}, in, outs[2];
		static float digit[784];
		float probs[10], sum = 0;
		CHECK(accel_tensor_from_f32(digit, sd, 4, &in));
		CHECK(accel_model_run(m, &in, 1, outs, 2));
		CHECK(accel_tensor_read(outs[1], 0, probs, 10));
		for (int i = 0; i < 10; i++)
			sum += probs[i];
		printf("model_run probabilities sum %.4f\n", sum);
	} else {
		printf("no model: %s\n", accel_errno_name(e));
	}
	CHECK(accel_tensor_free(c));
	return 0;
}
