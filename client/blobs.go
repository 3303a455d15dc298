package client

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/accelnode/accelnode/server/api"
)

// PutModule stores a WebAssembly module, which the node compiles to check
// it, and returns its sha256 and size. A *bytes.Reader, *bytes.Buffer or
// *strings.Reader is sent with its length; another reader is streamed.
func (c *Client) PutModule(ctx context.Context, wasm io.Reader) (api.Blob, error) {
	var b api.Blob
	_, err := c.call(ctx, request{method: http.MethodPut, path: "/v1/modules", stream: wasm, contentType: "application/wasm"}, &b)
	return b, err
}

// Module says whether the node holds the caller's module hash, and its
// size: a HEAD request, so nothing is downloaded. Blob downloads it.
func (c *Client) Module(ctx context.Context, hash string) (api.Blob, error) {
	resp, err := c.send(ctx, request{method: http.MethodHead, path: "/v1/modules/" + seg(hash), retry: true})
	if err != nil {
		return api.Blob{}, err
	}
	resp.Body.Close()
	b := api.Blob{SHA256: hash, Size: resp.ContentLength}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		b.Created = t
	}
	return b, nil
}

// DeleteModule removes the caller's module hash.
func (c *Client) DeleteModule(ctx context.Context, hash string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/modules/" + seg(hash)}, nil)
	return err
}

// Modules lists the caller's modules.
func (c *Client) Modules(ctx context.Context) ([]api.Blob, error) {
	var out struct {
		Modules []api.Blob `json:"modules"`
	}
	err := c.get(ctx, "/v1/modules", nil, &out)
	return out.Modules, err
}

// PutBlob stores r's bytes as a blob, such as a job's standard input, and
// returns its sha256 and size. Larger data goes through Upload.
func (c *Client) PutBlob(ctx context.Context, r io.Reader) (api.Blob, error) {
	var b api.Blob
	_, err := c.call(ctx, request{method: http.MethodPut, path: "/v1/blobs", stream: r, contentType: "application/octet-stream"}, &b)
	return b, err
}

// Blob opens the caller's blob hash (a module, a job's input or output)
// for reading; the caller closes it.
func (c *Client) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/blobs/" + seg(hash), retry: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// DeleteBlob removes the caller's blob hash. The node refuses (conflict)
// to remove the bytes of a registered model.
func (c *Client) DeleteBlob(ctx context.Context, hash string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/blobs/" + seg(hash)}, nil)
	return err
}

// Blobs lists the caller's blobs, modules included.
func (c *Client) Blobs(ctx context.Context) ([]api.Blob, error) {
	var out struct {
		Blobs []api.Blob `json:"blobs"`
	}
	err := c.get(ctx, "/v1/blobs", nil, &out)
	return out.Blobs, err
}

// Models lists the models registered on the node.
func (c *Client) Models(ctx context.Context) ([]api.Model, error) {
	var out struct {
		Models []api.Model `json:"models"`
	}
	err := c.get(ctx, "/v1/models", nil, &out)
	return out.Models, err
}

// Model describes the registered model name: its inputs and outputs.
func (c *Client) Model(ctx context.Context, name string) (api.Model, error) {
	var m api.Model
	err := c.get(ctx, "/v1/models/"+seg(name), nil, &m)
	return m, err
}

// formatWait writes a long-poll duration for ?wait=.
func formatWait(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
