/*
 * wasi_nn.h: the wasi-nn API (the witx version, import module
 * "wasi_ephemeral_nn") for C guests built with clang --target=wasm32-wasi,
 * declared as the published wasi-nn C headers declare it, with the
 * numbering of the current witx (Wasmtime; the Rust crates wasi-nn and
 * wasmedge-wasi-nn), as docs/abi.md ("wasi-nn") gives it; the node also
 * reads the old witx tensor types of WasmEdge's plugin. accelnode serves
 * it for ONNX graphs; a guest written against WasmEdge's wasi-nn runs on
 * accelnode unchanged, with the graph given by name (load_by_name) or as
 * bytes (load). Copy it into your guest; it needs nothing but <stdint.h>.
 *
 *   clang --target=wasm32-wasi -O2 -o guest.wasm guest.c
 *   accelnode run --nn-graph mnist=bin/mnist.onnx guest.wasm
 *
 * Every function returns a wasi_nn_error; success is 0.
 */
#ifndef WASI_NN_H
#define WASI_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	success = 0,
	invalid_argument = 1,
	invalid_encoding = 2,
	missing_memory = 3,
	busy = 4,
	runtime_error = 5,
	unsupported_operation = 6,
	too_large = 7,
	not_found = 8,
} wasi_nn_error;

typedef enum {
	fp16 = 0,
	fp32 = 1,
	fp64 = 2,
	up8 = 3, /* u8; named as the published headers name it */
	ip32 = 4,
	ip64 = 5,
} tensor_type;

typedef enum {
	openvino = 0,
	onnx = 1,
	tensorflow = 2,
	pytorch = 3,
	tensorflowlite = 4,
	autodetect = 5,
	ggml = 6, /* WasmEdge's; refused by accelnode */
} graph_encoding;

typedef enum {
	cpu = 0,
	gpu = 1,
	tpu = 2,
	auto_target = 3, /* WasmEdge's AUTO: the node's backend */
} execution_target;

typedef uint32_t graph;
typedef uint32_t graph_execution_context;

/* A list of u32 dimensions. */
typedef struct {
	uint32_t *buf;
	uint32_t size;
} tensor_dimensions;

typedef uint8_t *tensor_data;

/* The tensor set_input takes, laid out as witx lays it out: dimensions
 * (pointer, length), the type as a u8 in a 4-byte slot, the data (pointer,
 * length in bytes): 20 bytes on wasm32. */
typedef struct {
	tensor_dimensions dimensions;
	uint32_t type; /* a tensor_type */
	tensor_data data;
	uint32_t data_size;
} tensor;

/* One graph builder: the bytes of a model (an .onnx file). */
typedef struct {
	uint8_t *buf;
	uint32_t size;
} graph_builder;

typedef struct {
	graph_builder *buf;
	uint32_t size;
} graph_builder_array;

#define WASI_NN_IMPORT(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

/* load loads a graph from its bytes (builder->size builders; ONNX takes
 * one) and writes its handle at g. */
WASI_NN_IMPORT("load") wasi_nn_error wasi_nn_load_raw(graph_builder *builders, uint32_t n_builders, uint32_t encoding, uint32_t target, graph *g);

/* load_by_name finds a graph the host preloaded under name (name_len
 * bytes, no terminator needed) and writes its handle at g. */
WASI_NN_IMPORT("load_by_name") wasi_nn_error load_by_name(const char *name, uint32_t name_len, graph *g);

/* init_execution_context makes a context for one graph: its inputs, one
 * run, its outputs. */
WASI_NN_IMPORT("init_execution_context") wasi_nn_error init_execution_context(graph g, graph_execution_context *ctx);

/* set_input sets input index of the context from the tensor. */
WASI_NN_IMPORT("set_input") wasi_nn_error set_input(graph_execution_context ctx, uint32_t index, tensor *t);

/* compute runs the graph on the inputs set. */
WASI_NN_IMPORT("compute") wasi_nn_error compute(graph_execution_context ctx);

/* get_output copies output index, at most out_max_len bytes, into out and
 * writes the number of bytes at bytes_written. */
WASI_NN_IMPORT("get_output") wasi_nn_error get_output(graph_execution_context ctx, uint32_t index, uint8_t *out, uint32_t out_max_len, uint32_t *bytes_written);

#undef WASI_NN_IMPORT

/* load as the published headers declare it. */
static inline wasi_nn_error load(graph_builder_array *builder, graph_encoding encoding, execution_target target, graph *g) {
	return wasi_nn_load_raw(builder->buf, builder->size, (uint32_t)encoding, (uint32_t)target, g);
}

/* wasi_nn_error_name names an error, "not_found" and the like. */
static inline const char *wasi_nn_error_name(wasi_nn_error e) {
	static const char *const names[] = {
	    "success", "invalid_argument", "invalid_encoding", "missing_memory", "busy",
	    "runtime_error", "unsupported_operation", "too_large", "not_found",
	};
	return (uint32_t)e < sizeof names / sizeof names[0] ? names[e] : "unknown error";
}

#ifdef __cplusplus
}
#endif

#endif /* WASI_NN_H */
