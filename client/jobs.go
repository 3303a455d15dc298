package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/accelnode/accelnode/server/api"
)

// idempotency returns the header of an Idempotency-Key, if any.
func idempotency(key string) http.Header {
	if key == "" {
		return nil
	}
	return http.Header{"Idempotency-Key": {key}}
}

// Submit queues a job and returns it, with its id. With an idempotency
// key, submitting again returns the job first submitted with that key
// instead of a new one; such a submit is repeated after a 429 (a full
// queue), which one without a key is not.
func (c *Client) Submit(ctx context.Context, req api.JobRequest, idempotencyKey string) (api.Job, error) {
	var j api.Job
	_, err := c.postJSON(ctx, http.MethodPost, "/v1/jobs", idempotency(idempotencyKey), req, idempotencyKey != "", &j)
	return j, err
}

// Job returns job id. With wait above zero it long-polls: the node answers
// once the job has ended or wait has passed, whichever comes first (the
// node bounds wait, to 60 s by default).
func (c *Client) Job(ctx context.Context, id string, wait time.Duration) (api.Job, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {formatWait(wait)}}
	}
	var j api.Job
	err := c.get(ctx, "/v1/jobs/"+seg(id), q, &j)
	return j, err
}

// pollWait is how long each long-poll of Wait asks the node to hold.
const pollWait = 30 * time.Second

// Wait long-polls job id until it ends, and returns it: done, failed or
// cancelled. It returns early with ctx's error when ctx ends; the job runs
// on.
func (c *Client) Wait(ctx context.Context, id string) (api.Job, error) {
	for {
		start := time.Now()
		j, err := c.Job(ctx, id, pollWait)
		if err != nil || j.Ended() {
			return j, err
		}
		// A node (or a proxy) that answers at once, not holding the poll,
		// is asked again a little later rather than in a busy loop.
		if time.Since(start) < 100*time.Millisecond {
			if err := sleep(ctx, 250*time.Millisecond); err != nil {
				return j, err
			}
		}
	}
}

// Result returns what job id computed. For the same request in strict
// mode its JSON is the same bytes on every node. A job that has not ended
// gives an error that wraps ErrPending; a failed job an invalid-job
// problem, a cancelled one a conflict.
func (c *Client) Result(ctx context.Context, id string) (api.JobResult, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + seg(id) + "/result", retry: true})
	if err != nil {
		return api.JobResult{}, err
	}
	defer resp.Body.Close()
	return decodeResult(resp)
}

// decodeResult reads the answer of GET /v1/jobs/{id}/result or POST
// /v1/invoke: a result, or a 202 and the job that has not ended.
func decodeResult(resp *http.Response) (api.JobResult, error) {
	if resp.StatusCode == http.StatusAccepted {
		var j api.Job
		if err := decodeJSON(resp, &j); err != nil {
			return api.JobResult{}, err
		}
		return api.JobResult{}, fmt.Errorf("job %s is %s: %w", j.ID, j.Status, ErrPending)
	}
	var r api.JobResult
	err := decodeJSON(resp, &r)
	return r, err
}

// Cancel stops job id, queued or running, and returns it. A job that had
// already ended gives a conflict problem.
func (c *Client) Cancel(ctx context.Context, id string) (api.Job, error) {
	var j api.Job
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/jobs/" + seg(id)}, &j)
	return j, err
}

// Jobs lists the caller's jobs.
func (c *Client) Jobs(ctx context.Context) ([]api.Job, error) {
	var out struct {
		Jobs []api.Job `json:"jobs"`
	}
	err := c.get(ctx, "/v1/jobs", nil, &out)
	return out.Jobs, err
}

// Invoke runs a job and returns its result once it ends: the synchronous
// form of Submit, Wait and Result. The idempotency key works as Submit's.
// Should the node answer before the job ends, Invoke waits for it.
func (c *Client) Invoke(ctx context.Context, req api.JobRequest, idempotencyKey string) (api.JobResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return api.JobResult{}, fmt.Errorf("client: %w", err)
	}
	resp, err := c.send(ctx, request{method: http.MethodPost, path: "/v1/invoke", header: idempotency(idempotencyKey),
		body: body, contentType: "application/json", retry: idempotencyKey != ""})
	if err != nil {
		return api.JobResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return decodeResult(resp)
	}
	var j api.Job
	if err := decodeJSON(resp, &j); err != nil {
		return api.JobResult{}, err
	}
	if _, err := c.Wait(ctx, j.ID); err != nil {
		return api.JobResult{}, err
	}
	return c.Result(ctx, j.ID)
}
