/*
 * mnist-wasinn: a C guest that classifies MNIST test digits through
 * wasi-nn (import module wasi_ephemeral_nn), with the graph the node
 * preloaded under a name (load_by_name), one compute per batch, and prints
 * what the Go guest examples/mnist prints: the accuracy, the confusion
 * matrix and the images per second, then its first predictions.
 *
 * It reads the uncompressed IDX files t10k-images-idx3-ubyte and
 * t10k-labels-idx1-ubyte (gunzip -k the files make deps fetches).
 *
 *   clang --target=wasm32-wasi -O2 -I hostfn/guest/c -o mnist-wasinn.wasm examples/c/mnist-wasinn/main.c
 *   accelnode run --nn-graph mnist=bin/mnist.onnx --dir bin/mnist-raw:/data:ro mnist-wasinn.wasm
 *
 * Flags, as the Go guest's: -data DIR, -model NAME, -batch N, -n N.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wasi_nn.h"

enum { SIDE = 28, PIXELS = SIDE * SIDE, CLASSES = 10, SHOWN = 20 };

static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* read_idx reads an uncompressed IDX file of the given magic: its count at
 * *n and its data after the header. */
static uint8_t *read_idx(const char *dir, const char *name, uint32_t magic, size_t header, uint32_t *n) {
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "mnist-wasinn: %s: %s (the guest reads the files uncompressed: gunzip -k)\n", path, strerror(errno));
		return NULL;
	}
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, got;
	do {
		if (len == cap) {
			cap = cap ? 2 * cap : 1 << 20;
			uint8_t *b = realloc(buf, cap);
			if (!b) {
				free(buf);
				fclose(f);
				fprintf(stderr, "mnist-wasinn: %s: out of memory\n", path);
				return NULL;
			}
			buf = b;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	if (len < header || be32(buf) != magic) {
		fprintf(stderr, "mnist-wasinn: %s: not an uncompressed IDX file of magic 0x%08x\n", path, (unsigned)magic);
		free(buf);
		return NULL;
	}
	*n = be32(buf + 4);
	if ((size_t)*n * (header == 16 ? PIXELS : 1) > len - header) {
		fprintf(stderr, "mnist-wasinn: %s: truncated\n", path);
		free(buf);
		return NULL;
	}
	return buf;
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what, wasi_nn_error e) {
	fprintf(stderr, "mnist-wasinn: %s: %s (wasi-nn error %d)\n", what, wasi_nn_error_name(e), (int)e);
	return 1;
}

int main(int argc, char **argv) {
	const char *data = "/data", *model = "mnist";
	long batch = 256, count = 10000;
	for (int i = 1; i < argc; i += 2) {
		const char *flag = argv[i];
		while (*flag == '-')
			flag++;
		if (i + 1 >= argc) {
			fprintf(stderr, "mnist-wasinn: flag -%s needs a value\n", flag);
			return 2;
		}
		if (!strcmp(flag, "data"))
			data = argv[i + 1];
		else if (!strcmp(flag, "model"))
			model = argv[i + 1];
		else if (!strcmp(flag, "batch"))
			batch = strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(flag, "n"))
			count = strtol(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "mnist-wasinn: unknown flag -%s\n", flag);
			return 2;
		}
	}
	if (batch < 1 || count < 1) {
		fprintf(stderr, "mnist-wasinn: -batch and -n must be positive\n");
		return 2;
	}
	uint32_t n_img, n_lab;
	uint8_t *images = read_idx(data, "t10k-images-idx3-ubyte", 0x803, 16, &n_img);
	uint8_t *labels = read_idx(data, "t10k-labels-idx1-ubyte", 0x801, 8, &n_lab);
	if (!images || !labels)
		return 1;
	if (count > (long)n_img)
		count = n_img;
	if (count > (long)n_lab)
		count = n_lab;

	graph g;
	wasi_nn_error e = load_by_name(model, (uint32_t)strlen(model), &g);
	if (e != success) {
		char what[300];
		snprintf(what, sizeof what, "load_by_name(\"%s\")", model);
		return fail(what, e);
	}
	graph_execution_context ctx;
	if ((e = init_execution_context(g, &ctx)) != success)
		return fail("init_execution_context", e);

	float *x = malloc(sizeof(float) * PIXELS * batch);
	float *probs = malloc(sizeof(float) * CLASSES * batch);
	if (!x || !probs) {
		fprintf(stderr, "mnist-wasinn: out of memory\n");
		return 1;
	}
	static long confusion[CLASSES][CLASSES];
	int guesses[SHOWN], shown = 0;
	long correct = 0;
	double busy = 0;
	for (long first = 0; first < count; first += batch) {
		long b = count - first < batch ? count - first : batch;
		const uint8_t *img = images + 16 + (size_t)first * PIXELS;
		for (long i = 0; i < b * PIXELS; i++)
			x[i] = (float)img[i] / 255;
		double start = now();
		uint32_t dims[4] = {(uint32_t)b, 1, SIDE, SIDE};
		tensor t = {
		    .dimensions = {.buf = dims, .size = 4},
		    .type = fp32,
		    .data = (uint8_t *)x,
		    .data_size = (uint32_t)(sizeof(float) * PIXELS * b),
		};
		if ((e = set_input(ctx, 0, &t)) != success)
			return fail("set_input", e);
		if ((e = compute(ctx)) != success)
			return fail("compute", e);
		/* Output 1 is "probs", the softmax of output 0, "logits": the
		 * Go guest reads it too. */
		uint32_t written = 0;
		if ((e = get_output(ctx, 1, (uint8_t *)probs, (uint32_t)(sizeof(float) * CLASSES * b), &written)) != success)
			return fail("get_output", e);
		if (written != sizeof(float) * CLASSES * b) {
			fprintf(stderr, "mnist-wasinn: get_output wrote %u bytes, want %u\n", (unsigned)written, (unsigned)(sizeof(float) * CLASSES * b));
			return 1;
		}
		busy += now() - start;
		for (long i = 0; i < b; i++) {
			const float *p = probs + i * CLASSES;
			int guess = 0, label = labels[8 + first + i];
			for (int c = 0; c < CLASSES; c++)
				if (p[c] > p[guess])
					guess = c;
			confusion[label][guess]++;
			if (guess == label)
				correct++;
			if (shown < SHOWN)
				guesses[shown++] = guess;
		}
	}
	printf("mnist: %ld test digits, batch %ld, through wasi-nn\n", count, batch);
	printf("accuracy %.2f%% (%ld of %ld), %.0f images/s\n", 100.0 * correct / count, correct, count, count / (busy > 0 ? busy : 1e-9));
	printf("confusion matrix (rows: true digit, columns: predicted):\n");
	printf("     ");
	for (int c = 0; c < CLASSES; c++)
		printf("%6d", c);
	printf("\n");
	for (int l = 0; l < CLASSES; l++) {
		printf("%4d ", l);
		for (int c = 0; c < CLASSES; c++)
			printf("%6ld", confusion[l][c]);
		printf("\n");
	}
	printf("first predictions:");
	for (int i = 0; i < shown; i++)
		printf(" %d", guesses[i]);
	printf("\n");
	return 0;
}
