// Package client is the Go client of accelnode's /v1 HTTP API: modules
// and blobs, resumable model uploads, and jobs. Its methods take and return
// the types of server/api. Infer and ModelMetadata speak the Open
// Inference Protocol (/v2); its errors are *InferError.
//
// An error answer of the node becomes an error that wraps an *api.Problem,
// which errors.As finds; its Kind names the error. A call that is safe to
// repeat (a GET, an upload chunk, a job submitted with an idempotency key)
// is repeated after a 429, as the answer's Retry-After says, a bounded
// number of times.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/accelnode/accelnode/server/api"
)

// Client talks to one node. It is safe for concurrent use.
type Client struct {
	base     string // scheme://host[/prefix], without a trailing slash
	key      string
	hc       *http.Client
	agent    string
	retries  int
	maxDelay time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as the bearer token of every request.
func WithAPIKey(key string) Option { return func(c *Client) { c.key = key } }

// WithHTTPClient sends requests through hc instead of http.DefaultClient.
// Its Timeout, if any, must be longer than the long-polls of Wait (30 s).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.agent = ua } }

// WithRetries sets how many times a call that is safe to repeat is sent
// again after a 429, and how many times Upload sends a failed chunk again
// unless UploadOptions says otherwise: 4 by default, 0 for never.
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithMaxDelay bounds the wait before a retry, whatever Retry-After asks:
// 30 s by default.
func WithMaxDelay(d time.Duration) Option { return func(c *Client) { c.maxDelay = d } }

// New returns a client of the node at baseURL, such as
// "http://127.0.0.1:8080".
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("client: node URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: node URL %q: want http://HOST[:PORT] or https://HOST[:PORT]", baseURL)
	}
	c := &Client{
		base:     strings.TrimRight(u.String(), "/"),
		hc:       http.DefaultClient,
		agent:    "accelnode-client",
		retries:  4,
		maxDelay: 30 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// ErrPending is the error of Result for a job that has not ended.
var ErrPending = errors.New("the job has not ended")

// Error is the error of a request the node answered with an error. It
// wraps the node's *api.Problem.
type Error struct {
	Method, Path string
	Problem      *api.Problem
	// RetryAfter is what the answer's Retry-After header asked, or 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s (%d %s)", e.Method, e.Path, e.Problem.Error(), e.Problem.Status, e.Problem.Kind())
}

func (e *Error) Unwrap() error { return e.Problem }

// request is one call of the API.
type request struct {
	method, path string
	query        url.Values
	header       http.Header
	// body is sent again on a retry; stream, if set, is sent once instead.
	body        []byte
	stream      io.Reader
	contentType string
	// retry says the call may be repeated after a 429.
	retry bool
}

// send makes the request and returns the answer if it succeeded (a status
// below 400); the caller closes its body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	for attempt := 0; ; attempt++ {
		var body io.Reader
		switch {
		case r.stream != nil:
			body = r.stream
		case r.body != nil:
			body = bytes.NewReader(r.body)
		}
		req, err := c.newRequest(ctx, r.method, target, body, r.header, "application/json, application/problem+json")
		if err != nil {
			return nil, err
		}
		if r.contentType != "" {
			req.Header.Set("Content-Type", r.contentType)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		e := readProblem(r.method, r.path, resp)
		if resp.StatusCode != http.StatusTooManyRequests || !r.retry || r.stream != nil || attempt >= c.retries {
			return nil, e
		}
		if err := sleep(ctx, c.delay(e.RetryAfter, attempt)); err != nil {
			return nil, e
		}
	}
}

// delay is how long to wait before retry number attempt+1: what the node
// asked, or a doubling backoff from 250 ms, at most maxDelay.
func (c *Client) delay(asked time.Duration, attempt int) time.Duration {
	d := asked
	if d <= 0 {
		d = 250 * time.Millisecond << min(attempt, 10)
	}
	return min(d, c.maxDelay)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// readProblem reads an error answer into an *Error, closing its body. An
// answer that is not problem+json (from a proxy, say) becomes a problem of
// type about:blank with the body's start as its detail.
func readProblem(method, path string, resp *http.Response) *Error {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Method: method, Path: path, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var p api.Problem
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); (mt == "application/problem+json" || mt == "application/json") &&
		json.Unmarshal(data, &p) == nil && p.Type != "" {
		if p.Status == 0 {
			p.Status = resp.StatusCode
		}
		e.Problem = &p
		return e
	}
	if kind, ok := headKinds[resp.StatusCode]; ok && method == http.MethodHead {
		// An answer to HEAD has no body: the status alone names the problem.
		e.Problem = &api.Problem{Type: api.ProblemPrefix + kind, Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode}
		return e
	}
	detail := strings.TrimSpace(string(data))
	if i := strings.IndexByte(detail, '\n'); i >= 0 {
		detail = detail[:i]
	}
	if len(detail) > 200 {
		detail = detail[:200]
	}
	e.Problem = &api.Problem{Type: "about:blank", Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode, Detail: detail}
	return e
}

// headKinds are the problems a HEAD request can meet, by status.
var headKinds = map[int]string{
	http.StatusBadRequest:   "bad-request",
	http.StatusUnauthorized: "unauthorized",
	http.StatusForbidden:    "forbidden",
	http.StatusNotFound:     "not-found",
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// call sends r and decodes the JSON answer into out, if out is not nil. It
// returns the answer's status.
func (c *Client) call(ctx context.Context, r request, out any) (int, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil || r.method == http.MethodHead || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, nil
	}
	return resp.StatusCode, decodeJSON(resp, out)
}

// decodeJSON reads a successful answer's JSON body into out.
func decodeJSON(resp *http.Response, out any) error {
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// maxAnswer bounds a JSON answer the client reads: a job's inline outputs
// and the longest listing fit well within it.
const maxAnswer = 256 << 20

// get is a GET, repeated after a 429, decoded into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, out any) error {
	_, err := c.call(ctx, request{method: http.MethodGet, path: path, query: query, retry: true}, out)
	return err
}

// postJSON sends v as JSON.
func (c *Client) postJSON(ctx context.Context, method, path string, header http.Header, v any, retry bool, out any) (int, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	return c.call(ctx, request{method: method, path: path, header: header, body: body, contentType: "application/json", retry: retry}, out)
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// Info describes the node: GET /v1/info.
type Info struct {
	Version  string        `json:"version"`
	Backend  string        `json:"backend"`
	Mode     string        `json:"mode"`
	Backends []BackendInfo `json:"backends"`
	// Key is the name of the caller's API key ("local" on a node without
	// keys).
	Key    string `json:"key"`
	Limits Limits `json:"limits"`
}

// BackendInfo is one backend of the node.
type BackendInfo struct {
	Name      string   `json:"name"`
	Available bool     `json:"available"`
	Modes     []string `json:"modes,omitempty"`
	Device    string   `json:"device,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// Limits are the node's bounds on what clients send and ask for.
type Limits struct {
	MaxBody         int64   `json:"max_body"`
	MaxModule       int64   `json:"max_module"`
	MaxBlob         int64   `json:"max_blob"`
	MaxUpload       int64   `json:"max_upload"`
	MaxChunk        int64   `json:"max_chunk"`
	MaxInlineOutput int64   `json:"max_inline_output"`
	MaxWaitSeconds  float64 `json:"max_wait_seconds"`
	Queue           int     `json:"queue"`
}

// Info describes the node and the limits it holds clients to.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.get(ctx, "/v1/info", nil, &info)
	return info, err
}

// newRequest makes a request with header, accepting accept, with the
// client's user agent and API key.
func (c *Client) newRequest(ctx context.Context, method, target string, body io.Reader, header http.Header, accept string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.agent)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	return req, nil
}
