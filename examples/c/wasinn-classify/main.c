/*
 * wasinn-classify: an image classifier written against wasi-nn the way
 * WasmEdge's published wasi-nn examples are (second-state's
 * WasmEdge-WASINN-examples, the mobilenet image ones with a named model):
 * a graph the host preloaded, found by name; one 1×3×224×224 f32 image in
 * (NCHW, normalised with ImageNet's mean and deviation); the 1000 class
 * scores out; the top five printed as those examples print them.
 *
 *   wasinn-classify [MODEL [IMAGE]]
 *
 * MODEL is the preloaded graph's name ("default" when absent). IMAGE is a
 * raw file of 3×224×224 little-endian f32 (602,112 bytes), already
 * normalised, or seed:N for an image drawn deterministically from N
 * (seed:1 when absent), so that runs can be compared without a picture.
 *
 *   clang --target=wasm32-wasi -O2 -I hostfn/guest/c -o wasinn-classify.wasm examples/c/wasinn-classify/main.c
 *   accelnode run --nn-preload default:ONNX:CPU:testdata/models/mobilenet_v2.onnx wasinn-classify.wasm
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

enum { CHANNELS = 3, HEIGHT = 224, WIDTH = 224, CLASSES = 1000, TOP = 5 };
#define ELEMENTS (CHANNELS * HEIGHT * WIDTH)

static float image[ELEMENTS];
static float scores[CLASSES];

/* draw fills image from seed as a picture's pixels in [0, 1] would be
 * after torchvision's normalisation: (p - mean[c]) / std[c]. The pixels
 * come from a 64-bit LCG (Knuth's MMIX constants), its top 24 bits. */
static void draw(uint64_t seed) {
	static const float mean[CHANNELS] = {0.485f, 0.456f, 0.406f};
	static const float sd[CHANNELS] = {0.229f, 0.224f, 0.225f};
	uint64_t s = seed;
	for (int c = 0; c < CHANNELS; c++)
		for (int i = 0; i < HEIGHT * WIDTH; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			float p = (float)(s >> 40) / (float)(1 << 24);
			image[c * HEIGHT * WIDTH + i] = (p - mean[c]) / sd[c];
		}
}

static int read_image(const char *path) {
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "wasinn-classify: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t n = fread(image, sizeof(float), ELEMENTS, f);
	int extra = fgetc(f) != EOF;
	fclose(f);
	if (n != ELEMENTS || extra) {
		fprintf(stderr, "wasinn-classify: %s: want %d f32 values (%d bytes), a 3x224x224 image\n", path, ELEMENTS, ELEMENTS * 4);
		return -1;
	}
	return 0;
}

static int fail(const char *what, wasi_nn_error e) {
	fprintf(stderr, "wasinn-classify: %s: %s (wasi-nn error %d)\n", what, wasi_nn_error_name(e), (int)e);
	return 1;
}

int main(int argc, char **argv) {
	const char *model = argc > 1 ? argv[1] : "default";
	const char *img = argc > 2 ? argv[2] : "seed:1";
	if (!strncmp(img, "seed:", 5)) {
		draw(strtoull(img + 5, NULL, 10));
	} else if (read_image(img)) {
		return 1;
	}

	graph g;
	wasi_nn_error e = load_by_name(model, (uint32_t)strlen(model), &g);
	if (e != success)
		return fail("load_by_name", e);
	printf("Loaded graph into wasi-nn with ID: %u\n", (unsigned)g);

	graph_execution_context ctx;
	if ((e = init_execution_context(g, &ctx)) != success)
		return fail("init_execution_context", e);
	printf("Created wasi-nn execution context with ID: %u\n", (unsigned)ctx);

	uint32_t dims[4] = {1, CHANNELS, HEIGHT, WIDTH};
	tensor t = {
	    .dimensions = {.buf = dims, .size = 4},
	    .type = fp32,
	    .data = (uint8_t *)image,
	    .data_size = sizeof image,
	};
	printf("Read input tensor, size in bytes: %u\n", (unsigned)t.data_size);
	if ((e = set_input(ctx, 0, &t)) != success)
		return fail("set_input", e);
	if ((e = compute(ctx)) != success)
		return fail("compute", e);
	printf("Executed graph inference\n");

	uint32_t written = 0;
	if ((e = get_output(ctx, 0, (uint8_t *)scores, sizeof scores, &written)) != success)
		return fail("get_output", e);
	if (written != sizeof scores) {
		fprintf(stderr, "wasinn-classify: get_output wrote %u bytes, want %u (1000 f32 scores)\n", (unsigned)written, (unsigned)sizeof scores);
		return 1;
	}

	/* The five highest scores, ties to the lower class. */
	int top[TOP];
	for (int k = 0; k < TOP; k++) {
		int best = -1;
		for (int c = 0; c < CLASSES; c++) {
			int taken = 0;
			for (int j = 0; j < k; j++)
				taken |= top[j] == c;
			if (!taken && (best < 0 || scores[c] > scores[best]))
				best = c;
		}
		top[k] = best;
	}
	for (int k = 0; k < TOP; k++)
		printf("   %d.) [%d](%.4f)\n", k + 1, top[k], scores[top[k]]);
	return 0;
}
