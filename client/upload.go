package client

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/accelnode/accelnode/server/api"
)

// CreateUpload starts a resumable upload of size bytes. With sum (a
// sha256 in lowercase hex) the node refuses bytes that do not have it at
// commit.
func (c *Client) CreateUpload(ctx context.Context, size int64, sum string) (api.Upload, error) {
	var u api.Upload
	_, err := c.postJSON(ctx, http.MethodPost, "/v1/uploads", nil, api.NewUpload{Size: size, SHA256: sum}, false, &u)
	return u, err
}

// PutChunk sends data as the bytes of upload id from offset on. Chunks may
// come in any order, and a chunk may be sent again as long as its bytes are
// the same (else the node answers conflict). It returns the upload's state.
func (c *Client) PutChunk(ctx context.Context, id string, offset int64, data []byte) (api.Upload, error) {
	return c.putChunk(ctx, id, offset, data, true)
}

func (c *Client) putChunk(ctx context.Context, id string, offset int64, data []byte, retry bool) (api.Upload, error) {
	var u api.Upload
	if len(data) == 0 {
		return c.UploadStatus(ctx, id)
	}
	h := http.Header{"Content-Range": {fmt.Sprintf("bytes %d-%d/*", offset, offset+int64(len(data))-1)}}
	_, err := c.call(ctx, request{method: http.MethodPut, path: "/v1/uploads/" + seg(id), header: h, body: data,
		contentType: "application/octet-stream", retry: retry}, &u)
	return u, err
}

// UploadStatus returns upload id's state: its size, the ranges received,
// and the offset to resume from.
func (c *Client) UploadStatus(ctx context.Context, id string) (api.Upload, error) {
	var u api.Upload
	err := c.get(ctx, "/v1/uploads/"+seg(id), nil, &u)
	return u, err
}

// Commit checks that upload id holds all its bytes with sha256 sum,
// registers them as the ONNX model name, and describes the model. The node
// discards an upload whose bytes have another sha256.
func (c *Client) Commit(ctx context.Context, id, name, sum string) (api.Model, error) {
	var m api.Model
	_, err := c.postJSON(ctx, http.MethodPost, "/v1/uploads/"+seg(id)+"/commit", nil, api.Commit{Name: name, SHA256: sum}, false, &m)
	return m, err
}

// AbortUpload discards upload id and the bytes it received.
func (c *Client) AbortUpload(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/uploads/" + seg(id)}, nil)
	return err
}

// DefaultChunkSize is the size of Upload's chunks unless UploadOptions
// sets another.
const DefaultChunkSize = 8 << 20

// UploadOptions tune Upload. The zero value is the defaults.
type UploadOptions struct {
	// ChunkSize is the most bytes sent in one request; DefaultChunkSize if
	// zero.
	ChunkSize int64
	// Resume names an upload begun before, to send only the bytes the node
	// lacks. Its size must be the content's.
	Resume string
	// SHA256 is the content's sha256 in lowercase hex, if known; Upload
	// computes it otherwise, reading the content once more.
	SHA256 string
	// Retries is how many times a chunk that failed for a reason that may
	// pass (a broken connection, a 429, a 5xx) is sent again, after a
	// doubling pause; the client's retries (WithRetries) if zero, none if
	// negative.
	Retries int
	// Progress, if not nil, is called with the bytes the node holds so far
	// and the total, when the upload starts and after each chunk.
	Progress func(sent, total int64)
	// Started, if not nil, is called with the upload's id once it exists,
	// so that the caller can resume it should Upload fail.
	Started func(id string)
}

// UploadError is the error of an Upload that failed after its upload
// began: ID names the upload, for UploadOptions.Resume.
type UploadError struct {
	ID  string
	Err error
}

func (e *UploadError) Error() string { return fmt.Sprintf("upload %s: %v", e.ID, e.Err) }

func (e *UploadError) Unwrap() error { return e.Err }

// Upload sends size bytes of r to the node as the ONNX model name, in
// chunks, and registers it: the whole resumable upload. It hashes the
// content (unless opts gives its sha256), starts an upload or resumes
// opts.Resume from the ranges the node holds, sends each missing chunk,
// sending again those that fail for a reason that may pass, and commits.
// After the upload began, its error is an *UploadError that names it.
func (c *Client) Upload(ctx context.Context, name string, r io.ReaderAt, size int64, opts *UploadOptions) (api.Model, error) {
	var o UploadOptions
	if opts != nil {
		o = *opts
	}
	if size <= 0 {
		return api.Model{}, fmt.Errorf("upload %s: size %d is not positive", name, size)
	}
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	retries := o.Retries
	switch {
	case retries == 0:
		retries = c.retries
	case retries < 0:
		retries = 0
	}
	sum := o.SHA256
	if sum == "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
			return api.Model{}, fmt.Errorf("upload %s: hash the content: %w", name, err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}

	var u api.Upload
	var err error
	if o.Resume != "" {
		if u, err = c.UploadStatus(ctx, o.Resume); err != nil {
			return api.Model{}, &UploadError{o.Resume, err}
		}
		switch {
		case u.Size != size:
			return api.Model{}, &UploadError{u.ID, fmt.Errorf("it is of %d bytes, the content of %d", u.Size, size)}
		case u.SHA256 != "" && u.SHA256 != sum:
			return api.Model{}, &UploadError{u.ID, fmt.Errorf("it expects sha256 %s, the content has %s", u.SHA256, sum)}
		}
	} else if u, err = c.CreateUpload(ctx, size, sum); err != nil {
		return api.Model{}, fmt.Errorf("upload %s: %w", name, err)
	}
	if o.Started != nil {
		o.Started(u.ID)
	}
	missing := Missing(u.Received, size)
	sent := size
	for _, g := range missing {
		sent -= g.End - g.Start
	}
	if o.Progress != nil {
		o.Progress(sent, size)
	}
	buf := make([]byte, min(chunk, size))
	for _, g := range missing {
		for off := g.Start; off < g.End; {
			data := buf[:min(chunk, g.End-off)]
			if n, err := r.ReadAt(data, off); n < len(data) {
				return api.Model{}, &UploadError{u.ID, fmt.Errorf("read the content at %d: %w", off, orUnexpectedEOF(err))}
			}
			if err := c.putChunkRetrying(ctx, u.ID, off, data, retries); err != nil {
				return api.Model{}, &UploadError{u.ID, err}
			}
			off += int64(len(data))
			sent += int64(len(data))
			if o.Progress != nil {
				o.Progress(sent, size)
			}
		}
	}
	m, err := c.Commit(ctx, u.ID, name, sum)
	if err != nil {
		return api.Model{}, &UploadError{u.ID, err}
	}
	return m, nil
}

// orUnexpectedEOF is the error of a read that came short: err, unless it
// is none or io.EOF.
func orUnexpectedEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// putChunkRetrying sends a chunk, and again up to retries times while it
// fails for a reason that may pass.
func (c *Client) putChunkRetrying(ctx context.Context, id string, off int64, data []byte, retries int) error {
	for attempt := 0; ; attempt++ {
		_, err := c.putChunk(ctx, id, off, data, false)
		if err == nil || attempt >= retries || ctx.Err() != nil || !transient(err) {
			return err
		}
		var asked time.Duration
		if e := (*Error)(nil); errors.As(err, &e) {
			asked = e.RetryAfter
		}
		if err := sleep(ctx, c.delay(asked, attempt)); err != nil {
			return err
		}
	}
}

// transient reports whether a request that failed with err may succeed if
// sent again: the connection failed, or the node answered 408, 429 or 5xx
// other than 501.
func transient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		s := e.Problem.Status
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || (s >= 500 && s != http.StatusNotImplemented)
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// Missing returns the ranges of [0, size) that received does not cover,
// in order.
func Missing(received []api.Range, size int64) []api.Range {
	rs := slices.Clone(received)
	slices.SortFunc(rs, func(a, b api.Range) int { return cmp.Compare(a.Start, b.Start) })
	var out []api.Range
	pos := int64(0)
	for _, r := range rs {
		if r.Start > pos {
			out = append(out, api.Range{Start: pos, End: min(r.Start, size)})
		}
		pos = max(pos, r.End)
		if pos >= size {
			break
		}
	}
	if pos < size {
		out = append(out, api.Range{Start: pos, End: size})
	}
	return out
}
