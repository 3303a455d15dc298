// Package api holds the JSON types of accelnode's /v1 HTTP API, shared by
// the server and the Go client. docs/api.md describes the routes, and
// server/openapi/v1.json is their OpenAPI document.
package api

import (
	"encoding/json"
	"time"
)

// JobRequest is the body of POST /v1/jobs and POST /v1/invoke.
type JobRequest struct {
	// Module is the sha256 of a module stored with PUT /v1/modules.
	Module string   `json:"module"`
	Args   []string `json:"args,omitempty"`
	Env    []string `json:"env,omitempty"`
	// Stdin is the guest's standard input (base64 in JSON); StdinBlob names
	// a stored blob instead, for large inputs.
	Stdin     []byte `json:"stdin,omitempty"`
	StdinBlob string `json:"stdin_blob,omitempty"`
	// Models the guest needs: each must be registered on the node.
	Models []string `json:"models,omitempty"`
	// Backend and Mode choose where and how; empty is the node's default.
	Backend string `json:"backend,omitempty"`
	Mode    string `json:"mode,omitempty"`
	// Limits, each at most the node's: a duration ("30s"), compute units,
	// and sizes ("64MiB").
	Timeout      string `json:"timeout,omitempty"`
	Budget       uint64 `json:"budget,omitempty"`
	Memory       string `json:"memory,omitempty"`
	TensorMemory string `json:"tensor_memory,omitempty"`
}

// JobResult is what a finished job computed. It holds nothing local to the
// node that ran it, so that for the same request in strict mode its JSON is
// the same bytes on every node and backend. Outputs larger than the node's
// inline bound are stored as blobs of the job's key and named by hash.
type JobResult struct {
	Outcome         string `json:"outcome"`
	ExitCode        uint32 `json:"exit_code"`
	Stdout          []byte `json:"stdout,omitempty"`
	StdoutBlob      string `json:"stdout_blob,omitempty"`
	StdoutSHA256    string `json:"stdout_sha256"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	Stderr          []byte `json:"stderr,omitempty"`
	StderrBlob      string `json:"stderr_blob,omitempty"`
	StderrSHA256    string `json:"stderr_sha256"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	Units           uint64 `json:"units"`
	// GuestUnits are the units of the guest's own instructions; part of
	// Units under strict guest determinism.
	GuestUnits   uint64 `json:"guest_units"`
	Mode         string `json:"mode"`
	ModuleSHA256 string `json:"module_sha256"`
	StdinSHA256  string `json:"stdin_sha256"`
}

// JobFacts are what is local to the node and the run: where and when it
// ran, and why it failed in the node's words.
type JobFacts struct {
	Backend        string    `json:"backend,omitempty"`
	Device         string    `json:"device,omitempty"`
	Attempts       int       `json:"attempts"`
	Created        time.Time `json:"created"`
	Started        time.Time `json:"started,omitzero"`
	Finished       time.Time `json:"finished,omitzero"`
	QueuedSeconds  float64   `json:"queued_seconds,omitempty"`
	ElapsedSeconds float64   `json:"elapsed_seconds,omitempty"`
	MemoryBytes    int64     `json:"memory_bytes,omitempty"`
	Error          string    `json:"error,omitempty"`
}

// Job statuses.
const (
	Queued    = "queued"
	Running   = "running"
	Done      = "done"
	Failed    = "failed"
	Cancelled = "cancelled"
)

// Job is the answer of GET /v1/jobs/{id}.
type Job struct {
	ID     string     `json:"id"`
	Status string     `json:"status"`
	Result *JobResult `json:"result,omitempty"`
	// Receipt is the node's signed statement of what the job computed,
	// once it is done.
	// It is crypto.SignedReceipt's JSON, as signed: check it with
	// crypto.VerifyReceipt.
	Receipt json.RawMessage `json:"receipt,omitempty"`
	// Session and Sealed belong to a job sent in an encrypted session: its
	// result and receipt travel only in Sealed (a SealedAnswer under the
	// session's keys), never in the clear.
	Session string   `json:"session,omitempty"`
	Sealed  []byte   `json:"sealed,omitempty"`
	Node    JobFacts `json:"node"`
}

// NodeIdentity is the answer of GET /v1/node: who signs this node's
// receipts, and under which versions of the contract and the ABI.
type NodeIdentity struct {
	// PublicKey is the node's Ed25519 key (32 bytes, base64), Fingerprint
	// its SHA256 fingerprint as the node prints it at start.
	PublicKey   []byte `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	// Contract is the numerics contract's version (docs/determinism.md).
	Contract string `json:"contract"`
	ABI      int    `json:"abi"`
	Version  string `json:"version"`
}

// SessionRequest is the body of POST /v1/sessions.
type SessionRequest struct {
	// PublicKey is the client's X25519 public key (32 bytes, base64).
	PublicKey []byte `json:"public_key"`
	// TTL, a duration ("300s"), is how long the session lives; empty is
	// the node's default.
	TTL string `json:"ttl,omitempty"`
}

// Session is an encrypted session: its id, and the node's public key for
// it, with which the client seals its requests (NaCl box).
type Session struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"public_key"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Sealed carries bytes sealed in a session: a 24-byte nonce, then the
// NaCl box. It is the body of POST /v1/sessions/{id}/invoke, whose
// plaintext is a JobRequest, and of its answer, whose plaintext is a
// SealedAnswer.
type Sealed struct {
	Job    string `json:"job,omitempty"`
	Sealed []byte `json:"sealed"`
}

// SealedAnswer is the plaintext of a sealed answer: the result and its
// receipt, or the problem that stopped the job.
type SealedAnswer struct {
	Result  *JobResult      `json:"result,omitempty"`
	Receipt json.RawMessage `json:"receipt,omitempty"`
	// Call is the answer of an actor call sent sealed.
	Call    *ActorCall `json:"call,omitempty"`
	Problem *Problem   `json:"problem,omitempty"`
}

// ActorRequest is the body of POST /v1/actors: a stored module built as a
// reactor, and what its calls may use.
type ActorRequest struct {
	Module  string   `json:"module"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Backend string   `json:"backend,omitempty"`
	Mode    string   `json:"mode,omitempty"`
	// Timeout and Budget bound each call; Memory and TensorMemory the
	// actor's whole life. Each at most the node's.
	Timeout      string `json:"timeout,omitempty"`
	Budget       uint64 `json:"budget,omitempty"`
	Memory       string `json:"memory,omitempty"`
	TensorMemory string `json:"tensor_memory,omitempty"`
	// IdleTimeout, shorter than the node's, evicts the actor sooner.
	IdleTimeout string `json:"idle_timeout,omitempty"`
	// Snapshot is when the actor's state is written to the store:
	// "every-call" (the default: a node killed at any moment loses no
	// answered call) or "on-evict".
	Snapshot string `json:"snapshot,omitempty"`
}

// Actor describes an actor.
type Actor struct {
	ID            string    `json:"id"`
	Module        string    `json:"module"`
	Backend       string    `json:"backend"`
	Mode          string    `json:"mode"`
	IdleTimeout   string    `json:"idle_timeout"`
	Snapshot      string    `json:"snapshot"`
	Created       time.Time `json:"created"`
	LastCall      time.Time `json:"last_call,omitzero"`
	Calls         uint64    `json:"calls"`
	Resident      bool      `json:"resident"`
	MemoryBytes   int64     `json:"memory_bytes,omitempty"`
	Tensors       int       `json:"tensors,omitempty"`
	TensorBytes   int64     `json:"tensor_bytes,omitempty"`
	SnapshotBytes int64     `json:"snapshot_bytes"`
}

// ActorCall is the answer of POST /v1/actors/{id}/call/{method}.
type ActorCall struct {
	// Reply is what the method replied (base64 in JSON).
	Reply []byte `json:"reply"`
	// Code is the method's own result: not 0 is its error, and the
	// actor keeps the state the call left.
	Code           uint32  `json:"code"`
	Outcome        string  `json:"outcome"`
	Units          uint64  `json:"units"`
	GuestUnits     uint64  `json:"guest_units"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	MemoryBytes    int64   `json:"memory_bytes"`
	Stdout         []byte  `json:"stdout,omitempty"`
	Stderr         []byte  `json:"stderr,omitempty"`
	// Receipt is the node's signed statement of the call (a
	// crypto.SignedReceipt): its job is "actor/{id}/call/{n}", its
	// input the payload's sha256, its args the method, its output the
	// reply's sha256 and its exit code the method's code.
	Receipt json.RawMessage `json:"receipt,omitempty"`
}

// Ended reports whether the job has finished, failed or been cancelled.
func (j Job) Ended() bool { return j.Status == Done || j.Status == Failed || j.Status == Cancelled }

// Blob describes a stored blob or module.
type Blob struct {
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created,omitzero"`
}

// Range is the half-open byte range [Start, End).
type Range struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Upload is the state of a resumable upload.
type Upload struct {
	ID     string `json:"id"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// Offset is how many bytes arrived contiguously from the start: where
	// to resume.
	Offset   int64   `json:"offset"`
	Received []Range `json:"received"`
	Complete bool    `json:"complete"`
}

// NewUpload is the body of POST /v1/uploads.
type NewUpload struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
}

// Commit is the body of POST /v1/uploads/{id}/commit.
type Commit struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Problem is an error answer (RFC 9457, application/problem+json). Type is
// stable per kind of error: ProblemPrefix followed by a name that
// docs/api.md lists.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Errno    string `json:"errno,omitempty"`
}

// ProblemPrefix begins every problem type.
const ProblemPrefix = "urn:accelnode:problem:"

func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

// Kind is the problem's name, such as "not-found".
func (p *Problem) Kind() string {
	if len(p.Type) > len(ProblemPrefix) && p.Type[:len(ProblemPrefix)] == ProblemPrefix {
		return p.Type[len(ProblemPrefix):]
	}
	return p.Type
}

// Model describes a registered ONNX model.
type Model struct {
	Name    string  `json:"name"`
	SHA256  string  `json:"sha256"`
	Inputs  []Value `json:"inputs"`
	Outputs []Value `json:"outputs"`
}

// Value is one input or output of a model.
type Value struct {
	Name string `json:"name"`
	// Type is the ONNX element type's name: FLOAT, INT32, ...
	Type string `json:"type"`
	// Shape holds each dimension's size, -1 for a symbolic one, whose name
	// Dims holds. Both are absent for a value of unknown rank.
	Shape []int64  `json:"shape"`
	Dims  []string `json:"dims,omitempty"`
}
