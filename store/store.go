// Package store keeps what a node accepts: blobs (modules, models, job inputs
// and outputs), resumable uploads, job records and actors, each owned by API
// keys.
//
// Store is the interface the server uses. Disk, opened by Open, is the
// embedded default: blobs in a content-addressed directory and records in a
// bbolt database, both under one data directory. A shared database and an
// object store can implement Store later without changing the server.
//
// Every method takes the owner, the id of the API key acting. A key sees only
// the blobs it put or committed and the jobs and uploads it created; asking for
// another key's is answered with ErrNotFound, so existence does not leak.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Store keeps blobs, uploads and job records for one node.
//
// This is an interface for decoupling, not third-party implementations: it
// may grow methods as the node needs them.
type Store interface {
	// PutBlob stores the bytes read from r, at most max of them, for owner and
	// returns their sha256 and size. Putting bytes that are already stored
	// adds owner's reference to the same blob. Longer input is refused with
	// ErrTooLarge and nothing is stored.
	PutBlob(ctx context.Context, owner string, r io.Reader, max int64) (BlobInfo, error)
	// OpenBlob opens owner's blob with the given sha256 (lowercase hex) for
	// reading. The caller closes it.
	OpenBlob(ctx context.Context, owner, hash string) (io.ReadSeekCloser, BlobInfo, error)
	// StatBlob reports owner's blob, or ErrNotFound.
	StatBlob(ctx context.Context, owner, hash string) (BlobInfo, error)
	// DeleteBlob removes owner's reference to a blob. The bytes go when no key
	// references them any longer.
	DeleteBlob(ctx context.Context, owner, hash string) error
	// ListBlobs lists owner's blobs by hash.
	ListBlobs(ctx context.Context, owner string) ([]BlobInfo, error)

	// CreateUpload starts a resumable upload of size bytes for owner. A
	// non-empty sha256 is the hash the bytes must have at commit.
	CreateUpload(ctx context.Context, owner string, size int64, sha256 string) (Upload, error)
	// WriteChunk writes the n bytes read from r at offset. Chunks may come in
	// any order and may be sent again; where a chunk overlaps bytes already
	// received it must repeat them exactly (ErrConflict otherwise). A chunk
	// outside the declared size is refused with ErrRange. The chunk is
	// durable when WriteChunk returns.
	WriteChunk(ctx context.Context, owner, id string, offset, n int64, r io.Reader) (Upload, error)
	// Upload reports an upload: what has been received and the contiguous
	// offset from which to resume.
	Upload(ctx context.Context, owner, id string) (Upload, error)
	// CommitUpload checks that every byte was received and that the bytes
	// hash to sha256 (and to the hash given at creation, if one was), then
	// moves them into the blob store as owner's and ends the upload. An
	// incomplete upload is refused with ErrRange and stays as it is. A hash
	// mismatch fails the upload cleanly: its bytes are discarded, nothing is
	// stored, and the error wraps ErrHashMismatch.
	CommitUpload(ctx context.Context, owner, id, sha256 string) (BlobInfo, error)
	// AbortUpload ends an upload and discards its bytes.
	AbortUpload(ctx context.Context, owner, id string) error

	// CreateJob records a queued job. If owner already has a job with the
	// same non-empty idempotency key, that job is returned with created
	// false; a different request under the same key is ErrConflict.
	CreateJob(ctx context.Context, j NewJob) (job Job, created bool, err error)
	// Job returns owner's job.
	Job(ctx context.Context, owner, id string) (Job, error)
	// JobByKey returns owner's job created with the idempotency key, or
	// ErrNotFound.
	JobByKey(ctx context.Context, owner, idempotencyKey string) (Job, error)
	// ListJobs lists jobs in the order they were created.
	ListJobs(ctx context.Context, f JobFilter) ([]Job, error)
	// Transition moves a job from state from to state to, storing result
	// when it is not nil. It is a compare-and-set: a job not in state from
	// is left alone and the error wraps ErrConflict, so a job is started,
	// completed or cancelled exactly once. The allowed moves are
	// queued→running, queued→cancelled, running→done, running→failed,
	// running→cancelled and running→queued (run it again); and
	// queued→done and queued→failed, for a caller that runs jobs without
	// recording their start (one commit less per job).
	Transition(ctx context.Context, id string, from, to State, result []byte) (Job, error)

	// Usage reports what owner holds, for quota checks.
	Usage(ctx context.Context, owner string) (Usage, error)

	// ActorStore keeps actors' records, modules and snapshots.
	ActorStore

	// Close releases the store.
	Close() error
}

// Errors a caller can test with errors.Is; a server maps them onto statuses.
var (
	// ErrNotFound: no such blob, upload, job or actor for this owner.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts what is stored (a chunk that
	// differs from bytes received, an idempotency key reused for another
	// request, a job not in the expected state).
	ErrConflict = errors.New("conflict")
	// ErrHashMismatch: the bytes do not have the expected sha256.
	ErrHashMismatch = errors.New("sha256 mismatch")
	// ErrTooLarge: more bytes than allowed.
	ErrTooLarge = errors.New("too large")
	// ErrRange: a chunk outside the upload, or a commit before every byte
	// arrived.
	ErrRange = errors.New("out of range")
	// ErrInvalid: a malformed argument (a hash that is not 64 lowercase hex
	// digits, an empty owner, an unknown state).
	ErrInvalid = errors.New("invalid argument")
	// ErrInUse: another process has the data directory open.
	ErrInUse = errors.New("in use by another process")
)

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Hash string    // sha256, lowercase hex
	Size int64     // bytes
	Time time.Time // when this owner first stored it
}

// Range is the half-open byte range [Start, End).
type Range struct {
	Start, End int64
}

// Upload describes a resumable upload.
type Upload struct {
	ID       string
	Owner    string
	Size     int64   // declared total size
	SHA256   string  // expected hash given at creation, or ""
	Received []Range // sorted, merged
	Offset   int64   // bytes received contiguously from 0: where to resume
	Created  time.Time
}

// Complete reports whether every byte has been received.
func (u Upload) Complete() bool { return u.Offset == u.Size }

// State is where a job is in its life.
type State string

// A job is queued, then running, then done, failed or cancelled.
const (
	Queued    State = "queued"
	Running   State = "running"
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Terminal reports whether a job in state s has ended.
func (s State) Terminal() bool { return s == Done || s == Failed || s == Cancelled }

func (s State) valid() bool {
	return s == Queued || s == Running || s.Terminal()
}

// NewJob is what CreateJob records.
type NewJob struct {
	Owner          string
	IdempotencyKey string // optional
	Request        []byte // opaque to the store

	// ID, where set (32 lowercase hex digits, from NewID), is the job's id
	// instead of a fresh one; an id already taken is ErrConflict.
	ID string
	// State, where set to an end state, records a job that already ran,
	// with its Result, in the one commit: a synchronous caller records its
	// job once, when it has ended. Empty is Queued.
	State  State
	Result []byte
}

// NewID returns a fresh job id.
func NewID() string { return newID() }

// Job is a job record.
type Job struct {
	ID             string
	Owner          string
	IdempotencyKey string `json:",omitempty"`
	State          State
	Request        []byte
	Result         []byte `json:",omitempty"`
	Attempts       int    // runs recorded: moves to running, or from queued to done or failed
	Created        time.Time
	Updated        time.Time
}

// JobFilter selects jobs for ListJobs. Empty fields match everything: the
// server always sets Owner to the caller's key; the node's scheduler leaves
// it empty to see every key's jobs.
type JobFilter struct {
	Owner string
	State State
	Limit int // at most this many; 0 is no limit
}

// Usage is what one owner holds.
type Usage struct {
	Blobs       int   // blobs referenced
	BlobBytes   int64 // their total size; a blob shared with other keys counts in full for each
	Uploads     int   // uploads in progress
	UploadBytes int64 // their declared sizes
	Queued      int   // jobs queued
	Running     int   // jobs running
}
