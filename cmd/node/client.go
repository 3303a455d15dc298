package main

// The commands that talk to a node over its API, through package client:
// upload, submit, job and models over /v1, infer over /v2.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/internal/files"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
)

// remote sets the node a command talks to and the key it sends.
var remote = group{env.Node, env.APIKey}

// dial returns a client of the node the settings name.
func dial(set *settings) (*client.Client, error) {
	c, err := client.New(set.get(env.Node), client.WithAPIKey(set.get(env.APIKey)), client.WithUserAgent("accelnode-cli"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName(env.Node), err)
	}
	return c, nil
}

// parseInterleaved parses a command line whose flags may come before,
// between or after its operands, and returns the operands.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// checkFormat checks a --format value.
func checkFormat(format string) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("--format: unknown format %q (want table or json)", format)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// uploadCommand sends an ONNX model to the node in resumable chunks and
// registers it.
func uploadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("upload", "upload [flags] NAME MODEL.onnx", stderr, remote)
	resume := flags.String("resume", "", "continue the upload with this id, sending only the bytes the node lacks")
	chunkFlag := flags.String("chunk", bytesize.Format(client.DefaultChunkSize), "bytes sent in one request")
	format := flags.String("format", "table", "output format of the registered model: table or json")
	operands, err := parseInterleaved(flags, args)
	if err != nil {
		return err
	}
	if len(operands) != 2 {
		flags.Usage()
		return exitError{exitNode}
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	chunk, err := bytesize.Parse(*chunkFlag)
	if err != nil || chunk <= 0 {
		return fmt.Errorf("--chunk: %q is not a positive size", *chunkFlag)
	}
	name, path := operands[0], operands[1]
	c, err := dial(set)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	size := fi.Size()
	if size == 0 {
		return fmt.Errorf("%s is empty", path)
	}

	hashing := newMeter(stderr, "hashing "+path)
	h := sha256.New()
	if _, err := io.Copy(h, &countingReader{r: io.NewSectionReader(f, 0, size), total: size, report: hashing.bytes}); err != nil {
		hashing.clear()
		return fmt.Errorf("read %s: %w", path, err)
	}
	hashing.clear()
	sum := hex.EncodeToString(h.Sum(nil))

	var id string
	sending := newMeter(stderr, "uploading "+name)
	m, err := c.Upload(ctx, name, f, size, &client.UploadOptions{
		ChunkSize: chunk,
		Resume:    *resume,
		SHA256:    sum,
		Progress:  sending.bytes,
		Started:   func(u string) { id = u },
	})
	sending.clear()
	if err != nil {
		if id != "" && resumable(err) {
			return fmt.Errorf("%w\nresume it with: accelnode upload --resume %s %s %s", err, id, name, path)
		}
		return err
	}
	if *format == "json" {
		return printJSON(stdout, m)
	}
	return modelTable(stdout, []api.Model{m})
}

// resumable reports whether an upload that failed with err may be resumed:
// it did not fail for what it holds (a wrong hash discards it, for one).
func resumable(err error) bool {
	var p *api.Problem
	if !errors.As(err, &p) {
		return true
	}
	return p.Status == http.StatusTooManyRequests || p.Status >= 500
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r      io.Reader
	n      int64
	total  int64
	report func(n, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.report(c.n, c.total)
	return n, err
}

// submitCommand sends a job to the node and prints its id, or with --wait
// waits for it and gives back the guest's output and exit code, as run
// does.
func submitCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	flags, set := newCommand("submit", "submit [flags] MODULE.wasm|SHA256 [-- ARGS...]", stderr, remote)
	wait := flags.Bool("wait", false, "wait for the job, print the guest's stdout and stderr, and exit with its exit code")
	backend := flags.String("backend", "", "backend that runs the job; empty is the node's default")
	mode := flags.String("mode", "", "determinism mode: strict, checked or fast; empty is the node's default")
	timeout := flags.String("timeout", "", "deadline of the job, such as 30s; empty is the node's")
	budget := flags.Uint64("budget", 0, "compute units the job may use; 0 is the node's limit")
	memory := flags.String("memory", "", "linear-memory limit of the guest, such as 256MiB; empty is the node's")
	tensorMemory := flags.String("tensor-memory", "", "limit on the tensors the guest holds; empty is the node's")
	stdinFlag := flags.String("stdin", "", "file whose bytes are the guest's standard input, or - for this command's; none by default")
	idem := flags.String("idempotency-key", "", "submitting again with the same key returns the first job instead of a new one")
	replicas := flags.String("replicas", "", "run the job on each of these nodes (URLs, comma-separated), in strict mode unless --mode says otherwise, and compare the outputs their signed receipts name")
	var envs, models listFlag
	flags.Var(&envs, "env", "set a guest environment variable KEY=VALUE (repeatable)")
	flags.Var(&models, "model", "a model registered on the node that the guest opens (repeatable)")
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return exitError{exitNode}
	}
	module, guestArgs := flags.Arg(0), flags.Args()[1:]
	if len(guestArgs) > 0 && guestArgs[0] == "--" {
		guestArgs = guestArgs[1:]
	}
	req := api.JobRequest{Args: guestArgs, Env: envs, Models: models, Backend: *backend, Mode: *mode,
		Timeout: *timeout, Budget: *budget, Memory: *memory, TensorMemory: *tensorMemory}
	if *replicas != "" {
		return submitReplicated(ctx, set, strings.Split(*replicas, ","), req, module, *stdinFlag, stdin, stdout, stderr)
	}
	c, err := dial(set)
	if err != nil {
		return err
	}

	// The module: a file, sent first (the node keeps it by its sha256), or
	// the sha256 of one the node holds.
	wasm, err := files.ReadRegular(module, maxModuleBytes)
	switch {
	case err == nil:
		b, err := c.PutModule(ctx, bytes.NewReader(wasm))
		if err != nil {
			return err
		}
		req.Module = b.SHA256
	case errors.Is(err, fs.ErrNotExist) && isSHA256(module):
		req.Module = module
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintln(stderr, "accelnode:", err)
		return exitError{exitNotFound}
	default:
		return err
	}

	if *stdinFlag != "" {
		var in []byte
		if *stdinFlag == "-" {
			in, err = io.ReadAll(stdin)
		} else {
			in, err = files.ReadRegular(*stdinFlag, maxModuleBytes)
		}
		if err != nil {
			return fmt.Errorf("--stdin: %w", err)
		}
		if len(in) <= maxInlineStdin {
			req.Stdin = in
		} else {
			b, err := c.PutBlob(ctx, bytes.NewReader(in))
			if err != nil {
				return err
			}
			req.StdinBlob = b.SHA256
		}
	}

	job, err := c.Submit(ctx, req, *idem)
	if err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintln(stdout, job.ID)
		return nil
	}
	job, err = waitJob(ctx, c, job, stderr)
	if err != nil {
		return err
	}
	return guestOutput(ctx, c, job, stdout, stderr)
}

// submitReplicated is submit --replicas: the same job on several nodes.
func submitReplicated(ctx context.Context, set *settings, urls []string, req api.JobRequest, module, stdinFile string, stdin io.Reader, stdout, stderr io.Writer) error {
	if req.Mode == "" {
		req.Mode = "strict" // only strict results are promised to agree
	}
	for i := range urls {
		urls[i] = strings.TrimSpace(urls[i])
	}
	wasm, err := files.ReadRegular(module, maxModuleBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist) && isSHA256(module):
		req.Module, wasm = module, nil
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintln(stderr, "accelnode:", err)
		return exitError{exitNotFound}
	case err != nil:
		return err
	default:
		sum := sha256.Sum256(wasm)
		req.Module = hex.EncodeToString(sum[:])
	}
	var in []byte
	switch stdinFile {
	case "":
	case "-":
		in, err = io.ReadAll(stdin)
	default:
		in, err = files.ReadRegular(stdinFile, maxModuleBytes)
	}
	if err != nil {
		return fmt.Errorf("--stdin: %w", err)
	}
	return submitReplicas(ctx, set, urls, req, wasm, in, stdout)
}

// maxInlineStdin is the most standard input sent inside the job request;
// more is stored as a blob first. Base64 makes it 4/3 larger, well within
// the node's default bound on a JSON body (1 MiB).
const maxInlineStdin = 256 << 10

func isSHA256(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil && strings.ToLower(s) == s
}

// waitJob waits for job to end, with a spinner on stderr. Interrupted, it
// says that the job runs on.
func waitJob(ctx context.Context, c *client.Client, job api.Job, stderr io.Writer) (api.Job, error) {
	if job.Ended() {
		return job, nil
	}
	stop := newMeter(stderr, "job "+job.ID).spin()
	ended, err := c.Wait(ctx, job.ID)
	stop()
	if err != nil && ctx.Err() != nil {
		return ended, fmt.Errorf("job %s runs on at the node: 'accelnode job --wait %s' waits for it again, 'accelnode job cancel %s' stops it: %w", job.ID, job.ID, job.ID, err)
	}
	return ended, err
}

// guestOutput writes an ended job's stdout and stderr as the guest's, and
// returns the exit status run would: the guest's exit code, or the code of
// how it ended.
func guestOutput(ctx context.Context, c *client.Client, job api.Job, stdout, stderr io.Writer) error {
	switch {
	case job.Status == api.Cancelled:
		return fmt.Errorf("job %s was cancelled", job.ID)
	case job.Status == api.Failed || job.Result == nil:
		return fmt.Errorf("job %s %s: %s", job.ID, job.Status, job.Node.Error)
	}
	r := job.Result
	for _, o := range []struct {
		w         io.Writer
		inline    []byte
		blob      string
		truncated bool
		name      string
	}{{stdout, r.Stdout, r.StdoutBlob, r.StdoutTruncated, "stdout"}, {stderr, r.Stderr, r.StderrBlob, r.StderrTruncated, "stderr"}} {
		if o.blob == "" {
			o.w.Write(o.inline)
		} else {
			rc, err := c.Blob(ctx, o.blob)
			if err != nil {
				return fmt.Errorf("the guest's %s: %w", o.name, err)
			}
			_, err = io.Copy(o.w, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("the guest's %s: %w", o.name, err)
			}
		}
		if o.truncated {
			fmt.Fprintf(stderr, "accelnode: the node kept only the start of the guest's %s\n", o.name)
		}
	}
	code := exitNode
	switch node.Outcome(r.Outcome) {
	case node.Exited:
		code = int(min(r.ExitCode, 255))
	case node.Deadline:
		code = exitDeadline
	case node.Budget:
		code = exitBudget
	case node.Memory:
		code = exitMemory
	case node.Trapped:
		code = exitTrap
	}
	if code == exitNode {
		return fmt.Errorf("job %s ended %s: %s", job.ID, r.Outcome, job.Node.Error)
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// jobCommand shows a job, waits for one, cancels one, or lists them.
func jobCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("job", "job [--wait] [--format table|json] ID | job cancel ID | job list [--format table|json]", stderr, remote)
	wait := flags.Bool("wait", false, "wait for the job to end")
	format := flags.String("format", "table", "output format: table or json")
	operands, err := parseInterleaved(flags, args)
	if err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	c, err := dial(set)
	if err != nil {
		return err
	}
	var jobs []api.Job
	switch {
	case len(operands) == 1 && operands[0] == "list":
		if jobs, err = c.Jobs(ctx); err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(stdout, jobs)
		}
		return jobTable(stdout, jobs)
	case len(operands) == 2 && operands[0] == "cancel":
		job, err := c.Cancel(ctx, operands[1])
		if err != nil {
			return err
		}
		jobs = []api.Job{job}
	case len(operands) == 1:
		job, err := c.Job(ctx, operands[0], 0)
		if err != nil {
			return err
		}
		if *wait {
			if job, err = waitJob(ctx, c, job, stderr); err != nil {
				return err
			}
		}
		jobs = []api.Job{job}
	default:
		flags.Usage()
		return exitError{exitNode}
	}
	if *format == "json" {
		return printJSON(stdout, jobs[0])
	}
	return jobTable(stdout, jobs)
}

// jobTable writes jobs as a borderless table.
func jobTable(w io.Writer, jobs []api.Job) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tOUTCOME\tEXIT\tBACKEND\tMODE\tUNITS\tELAPSED\tCREATED")
	for _, j := range jobs {
		outcome, exit, mode, units := "-", "-", "-", "-"
		if r := j.Result; r != nil {
			outcome, mode, units = r.Outcome, r.Mode, strconv.FormatUint(r.Units, 10)
			if r.Outcome == string(node.Exited) {
				exit = strconv.FormatUint(uint64(r.ExitCode), 10)
			}
		}
		backend, elapsed := dash(j.Node.Backend), "-"
		if j.Node.ElapsedSeconds > 0 {
			elapsed = time.Duration(j.Node.ElapsedSeconds * float64(time.Second)).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Status, outcome, exit, backend, mode, units, elapsed,
			j.Node.Created.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// modelsCommand lists the models registered on the node, or describes one.
func modelsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("models", "models [--format table|json] [NAME]", stderr, remote)
	format := flags.String("format", "table", "output format: table or json")
	operands, err := parseInterleaved(flags, args)
	if err != nil {
		return err
	}
	if len(operands) > 1 {
		flags.Usage()
		return exitError{exitNode}
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	c, err := dial(set)
	if err != nil {
		return err
	}
	if len(operands) == 1 {
		m, err := c.Model(ctx, operands[0])
		if err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(stdout, m)
		}
		return modelTable(stdout, []api.Model{m})
	}
	list, err := c.Models(ctx)
	if err != nil {
		return err
	}
	if *format == "json" {
		if list == nil {
			list = []api.Model{}
		}
		return printJSON(stdout, list)
	}
	return modelTable(stdout, list)
}

// modelTable writes models as a borderless table.
func modelTable(w io.Writer, models []api.Model) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSHA256\tINPUTS\tOUTPUTS")
	for _, m := range models {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.SHA256[:min(12, len(m.SHA256))], values(m.Inputs), values(m.Outputs))
	}
	return tw.Flush()
}

// values writes a model's inputs or outputs as "x FLOAT[batch,784]".
func values(vs []api.Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		shape := "[?]" // unknown rank
		if v.Shape != nil {
			dims := make([]string, len(v.Shape))
			for j, d := range v.Shape {
				switch {
				case d >= 0:
					dims[j] = strconv.FormatInt(d, 10)
				case j < len(v.Dims) && v.Dims[j] != "":
					dims[j] = v.Dims[j]
				default:
					dims[j] = "?"
				}
			}
			shape = "[" + strings.Join(dims, ",") + "]"
		}
		parts[i] = v.Name + " " + v.Type + shape
	}
	return strings.Join(parts, ", ")
}

// inferCommand runs a model on the node through the Open Inference
// Protocol (/v2) and prints its outputs.
func inferCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("infer", "infer [flags] MODEL [--input NAME=SHAPE:VALUES|SHAPE:@FILE|SHAPE:sin ...]", stderr, remote)
	var inputs listFlag
	flags.Var(&inputs, "input", "an input, NAME=SHAPE:VALUES (repeatable): SHAPE such as 1x4, empty for a scalar; VALUES a comma list\n"+
		"(0.5,-1,2,3.25), @FILE of raw little-endian elements, or sin for x[i] = sin(i) (round(100·sin(i)) for INT32).\n"+
		"Without it, a model of one input runs on sin, each symbolic dimension 1")
	format := flags.String("format", "table", "output format: table, or json with every value")
	operands, err := parseInterleaved(flags, args)
	if err != nil {
		return err
	}
	if len(operands) != 1 {
		flags.Usage()
		return exitError{exitNode}
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	model := operands[0]
	c, err := dial(set)
	if err != nil {
		return err
	}
	md, err := c.ModelMetadata(ctx, model)
	if err != nil {
		return err
	}
	tensors, err := inferInputs(md, inputs)
	if err != nil {
		return err
	}
	outs, err := c.Infer(ctx, model, tensors, nil)
	if err != nil {
		return err
	}
	if *format == "json" {
		res := inferJSON{Model: md.Name, Outputs: make([]inferOutput, len(outs))}
		for i, o := range outs {
			sum := sha256.Sum256(o.Data)
			res.Outputs[i] = inferOutput{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, Data: jsonValues(o), SHA256: hex.EncodeToString(sum[:])}
			if o.Shape == nil {
				res.Outputs[i].Shape = []int64{}
			}
		}
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "OUTPUT\tDATATYPE\tSHAPE\tVALUES")
	for _, o := range outs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, o.Datatype, shapeString(o.Shape), tableValues(o))
	}
	return tw.Flush()
}

// inferJSON is what infer --format json prints.
type inferJSON struct {
	Model   string        `json:"model"`
	Outputs []inferOutput `json:"outputs"`
}

type inferOutput struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	// Data holds every element, row-major: numbers, and for FP32 the
	// strings "NaN", "Infinity" and "-Infinity", as the protocol writes
	// them.
	Data json.RawMessage `json:"data"`
	// SHA256 is the hex sha256 of the elements' little-endian bytes.
	SHA256 string `json:"sha256"`
}

// inferInputs makes the tensors of the --input flags, or with none the
// default input of a model of one input.
func inferInputs(md client.ModelMetadata, specs []string) ([]client.Tensor, error) {
	declared := make(map[string]string, len(md.Inputs))
	names := make([]string, len(md.Inputs))
	for i, in := range md.Inputs {
		declared[in.Name] = in.Datatype
		names[i] = in.Name
	}
	if len(specs) == 0 {
		if len(md.Inputs) != 1 {
			return nil, fmt.Errorf("model %s has %d inputs (%s): give each with --input NAME=SHAPE:VALUES", md.Name, len(md.Inputs), strings.Join(names, ", "))
		}
		in := md.Inputs[0]
		shape := make([]string, len(in.Shape))
		for i, d := range in.Shape {
			shape[i] = strconv.FormatInt(max(d, 1), 10) // a symbolic dimension: 1
		}
		t, err := inferInput(in.Name, in.Datatype, strings.Join(shape, "x")+":sin")
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", md.Name, err)
		}
		return []client.Tensor{t}, nil
	}
	var tensors []client.Tensor
	seen := map[string]bool{}
	for _, s := range specs {
		name, spec, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--input %q: want NAME=SHAPE:VALUES, such as x=1x4:0.5,-1,2,3.25", s)
		}
		dt, ok := declared[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("--input %s: model %s has no input %q (its inputs: %s)", name, md.Name, name, strings.Join(names, ", "))
		case seen[name]:
			return nil, fmt.Errorf("--input %s: given twice", name)
		}
		seen[name] = true
		t, err := inferInput(name, dt, spec)
		if err != nil {
			return nil, fmt.Errorf("--input %s: %w", name, err)
		}
		tensors = append(tensors, t)
	}
	return tensors, nil
}

// inferInput makes the input name of datatype from SHAPE:VALUES,
// SHAPE:@FILE or SHAPE:sin.
func inferInput(name, datatype, spec string) (client.Tensor, error) {
	if datatype != client.FP32 && datatype != client.INT32 {
		return client.Tensor{}, fmt.Errorf("input %s is %s; the node takes FP32 and INT32 inputs", name, datatype)
	}
	dims, values, ok := strings.Cut(spec, ":")
	if !ok {
		return client.Tensor{}, fmt.Errorf("%q: want SHAPE:VALUES, SHAPE:@FILE or SHAPE:sin, such as 1x4:sin", spec)
	}
	shape := []int64{}
	n := int64(1)
	if dims != "" {
		for _, f := range strings.Split(dims, "x") {
			d, err := strconv.ParseInt(f, 10, 64)
			if err != nil || d < 1 {
				return client.Tensor{}, fmt.Errorf("shape %q: each dimension is a positive integer, as in 1x4", dims)
			}
			if d > accel.MaxElements/n {
				return client.Tensor{}, fmt.Errorf("shape %s holds more than the node's %d elements a tensor", dims, accel.MaxElements)
			}
			n *= d
			shape = append(shape, d)
		}
	}
	t := client.Tensor{Name: name, Datatype: datatype, Shape: shape}
	switch {
	case values == "sin":
		t.Data = make([]byte, 0, 4*n)
		for i := range n {
			s := math.Sin(float64(i))
			if datatype == client.INT32 {
				t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(int32(math.Round(100*s))))
			} else {
				t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(float32(s)))
			}
		}
	case strings.HasPrefix(values, "@"):
		path := values[1:]
		wrongSize := func(size int64) error {
			return fmt.Errorf("%s holds %d bytes; %s[%s] takes %d (4 a little-endian element)", path, size, datatype, strings.ReplaceAll(dims, "x", ","), 4*n)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() != 4*n {
			return client.Tensor{}, wrongSize(fi.Size())
		}
		data, err := files.ReadRegular(path, 4*n)
		if err != nil {
			return client.Tensor{}, err
		}
		if int64(len(data)) != 4*n {
			return client.Tensor{}, wrongSize(int64(len(data)))
		}
		t.Data = data
	default:
		fields := strings.Split(values, ",")
		if int64(len(fields)) != n {
			return client.Tensor{}, fmt.Errorf("%d values for shape [%s], which holds %d", len(fields), strings.ReplaceAll(dims, "x", ","), n)
		}
		t.Data = make([]byte, 0, 4*n)
		for i, f := range fields {
			f = strings.TrimSpace(f)
			if datatype == client.INT32 {
				v, err := strconv.ParseInt(f, 10, 32)
				if err != nil {
					return client.Tensor{}, fmt.Errorf("value %d, %q, is not an INT32 integer", i, f)
				}
				t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(int32(v)))
				continue
			}
			v, err := strconv.ParseFloat(f, 32)
			if err != nil {
				return client.Tensor{}, fmt.Errorf("value %d, %q, is not an FP32 number", i, f)
			}
			t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(float32(v)))
		}
	}
	return t, nil
}

// shapeString writes a shape as [1,4].
func shapeString(shape []int64) string {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(dims, ",") + "]"
}

// elementStrings writes a tensor's elements, FP32 in the shortest form
// that reads back to the same bits.
func elementStrings(t client.Tensor, limit int) []string {
	n := min(len(t.Data)/4, limit)
	out := make([]string, n)
	for i := range n {
		u := binary.LittleEndian.Uint32(t.Data[4*i:])
		if t.Datatype == client.INT32 {
			out[i] = strconv.FormatInt(int64(int32(u)), 10)
		} else {
			out[i] = strconv.FormatFloat(float64(math.Float32frombits(u)), 'g', -1, 32)
		}
	}
	return out
}

// Outputs of at most tableAll elements are shown whole; larger ones by
// their first tableHead elements and their sha256.
const (
	tableAll  = 20
	tableHead = 10
)

// tableValues writes a tensor's values for the table.
func tableValues(t client.Tensor) string {
	n := len(t.Data) / 4
	if n <= tableAll {
		return strings.Join(elementStrings(t, n), " ")
	}
	sum := sha256.Sum256(t.Data)
	return fmt.Sprintf("%s … (%d values, sha256 %s)", strings.Join(elementStrings(t, tableHead), " "), n, hex.EncodeToString(sum[:]))
}

// jsonValues writes a tensor's values as a flat JSON array.
func jsonValues(t client.Tensor) json.RawMessage {
	vals := elementStrings(t, len(t.Data)/4)
	for i, v := range vals {
		switch v {
		case "NaN":
			vals[i] = `"NaN"`
		case "+Inf":
			vals[i] = `"Infinity"`
		case "-Inf":
			vals[i] = `"-Infinity"`
		}
	}
	return json.RawMessage("[" + strings.Join(vals, ",") + "]")
}

// meter shows the progress of long work on stderr: on a terminal a line
// redrawn in place, elsewhere a plain line now and then, so that logs stay
// readable. It never writes to stdout.
type meter struct {
	w     io.Writer
	tty   bool
	label string
	start time.Time

	mu    sync.Mutex
	last  time.Time // of the last line drawn
	drawn int       // width of the line on a terminal, to clear it
}

// Pacing of the meter's lines.
const (
	ttyEvery   = 100 * time.Millisecond
	plainEvery = 10 * time.Second
)

func newMeter(w io.Writer, label string) *meter {
	return &meter{w: w, tty: isTerminal(w), label: label, start: time.Now()}
}

// bytes shows that n of total bytes are done.
func (m *meter) bytes(n, total int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	every := plainEvery
	if m.tty {
		every = ttyEvery
	}
	if n < total && now.Sub(m.last) < every {
		return
	}
	if !m.tty && n >= total && m.last.IsZero() && now.Sub(m.start) < plainEvery {
		return // quick work needs no line
	}
	m.last = now
	pct := 100 * float64(n) / float64(max(total, 1))
	rate := float64(n) / max(now.Sub(m.start).Seconds(), 1e-3)
	amount := fmt.Sprintf("%s of %s, %s/s", mib(n), mib(total), mib(int64(rate)))
	if !m.tty {
		fmt.Fprintf(m.w, "%s: %3.0f%% (%s)\n", m.label, pct, amount)
		return
	}
	const width = 30
	fill := int(pct / 100 * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	if fill > 0 && fill < width {
		bar = strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", width-fill)
	}
	m.draw(fmt.Sprintf("%s [%s] %3.0f%%  %s", m.label, bar, pct, amount))
}

// draw replaces the terminal's line with line.
func (m *meter) draw(line string) {
	width := utf8.RuneCountInString(line)
	fmt.Fprintf(m.w, "\r%s%s", line, strings.Repeat(" ", max(m.drawn-width, 0)))
	m.drawn = width
}

// clear erases the meter's line from a terminal.
func (m *meter) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tty && m.drawn > 0 {
		fmt.Fprintf(m.w, "\r%s\r", strings.Repeat(" ", m.drawn))
		m.drawn = 0
	}
}

// spin shows a spinner and the time elapsed until the returned function
// is called, which erases it.
func (m *meter) spin() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		every := plainEvery
		if m.tty {
			every = ttyEvery
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			elapsed := time.Since(m.start).Round(time.Second)
			m.mu.Lock()
			if m.tty {
				m.draw(fmt.Sprintf("%c waiting for %s  %s", frames[i%len(frames)], m.label, time.Since(m.start).Round(100*time.Millisecond)))
			} else {
				fmt.Fprintf(m.w, "waiting for %s: %s\n", m.label, elapsed)
			}
			m.mu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		m.clear()
	}
}
