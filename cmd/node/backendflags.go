package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/envconfig"
)

// backendFlags are the flags that configure how backends open, shared by
// every command that opens them.
type backendFlags struct {
	mode, threads, cudaPath, tf32, ortLib *string
}

func addBackendFlags(fs *flag.FlagSet) *backendFlags {
	return &backendFlags{
		mode:     fs.String("determinism", envconfig.Determinism.Value(), "determinism mode: strict, checked or fast"),
		threads:  fs.String("threads", envconfig.Threads.Value(), "CPU threads per backend; 0 means one per core"),
		cudaPath: fs.String("cuda-path", envconfig.CUDAPath.Value(), "directories (colon-separated) searched first for the CUDA libraries"),
		tf32:     fs.String("tf32", envconfig.TF32.Value(), "on lets fast-mode GPU matmul and conv2d use TF32 tensor cores"),
		ortLib:   fs.String("ort-lib", envconfig.ORTLibrary.Value(), "ONNX Runtime's shared library; empty means .deps/libonnxruntime.so.1"),
	}
}

// options reads the flags into the mode and the backends' options.
func (f *backendFlags) options(log *slog.Logger) (accel.Mode, accel.Options, error) {
	mode, err := accel.ParseMode(*f.mode)
	if err != nil {
		return 0, accel.Options{}, err
	}
	threads, err := strconv.Atoi(*f.threads)
	if err != nil || threads < 0 {
		return 0, accel.Options{}, fmt.Errorf("invalid thread count %q", *f.threads)
	}
	if *f.tf32 != "on" && *f.tf32 != "off" {
		return 0, accel.Options{}, fmt.Errorf("invalid tf32 setting %q (want on or off)", *f.tf32)
	}
	return mode, accel.Options{
		Threads:   threads,
		Mode:      mode,
		TF32:      *f.tf32 == "on",
		Libraries: map[string]string{"cuda": *f.cudaPath, "ort": *f.ortLib},
		Logger:    log,
	}, nil
}
