package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// jobRecord is a job as stored: the job and its place in the order of
// creation.
type jobRecord struct {
	Job
	Seq uint64
}

// allowed lists the moves Transition makes.
var allowed = map[[2]State]bool{
	{Queued, Running}:    true,
	{Queued, Cancelled}:  true,
	{Queued, Done}:       true, // a run the store was not told of: see Job.Attempts
	{Queued, Failed}:     true,
	{Running, Done}:      true,
	{Running, Failed}:    true,
	{Running, Cancelled}: true,
	{Running, Queued}:    true,
}

// countState changes the usage counters of the states that are counted.
func countState(u *Usage, s State, delta int) {
	switch s {
	case Queued:
		u.Queued += delta
	case Running:
		u.Running += delta
	}
}

// CreateJob records a queued job, or returns the one owner made with the same
// idempotency key.
func (d *Disk) CreateJob(ctx context.Context, nj NewJob) (Job, bool, error) {
	if err := validOwner(nj.Owner); err != nil {
		return Job{}, false, err
	}
	if len(nj.IdempotencyKey) > 256 {
		return Job{}, false, fmt.Errorf("idempotency key of %d bytes: want at most 256: %w", len(nj.IdempotencyKey), ErrInvalid)
	}
	state := nj.State
	switch {
	case state == "":
		state = Queued
	case state != Queued && !state.Terminal():
		return Job{}, false, fmt.Errorf("job: a new job in state %q: %w", state, ErrInvalid)
	}
	if nj.ID != "" {
		if err := validID("job", nj.ID); err != nil {
			return Job{}, false, fmt.Errorf("job id %q: want 32 lowercase hex digits: %w", nj.ID, ErrInvalid)
		}
	}
	if err := ctx.Err(); err != nil {
		return Job{}, false, err
	}
	var job Job
	created := false
	// Batch: concurrent submissions share one commit, and one fsync. The
	// function may run twice, so it sets its results afresh each time.
	err := d.db.Batch(func(tx *bolt.Tx) error {
		job, created = Job{}, false
		idem := tx.Bucket(bucketIdem)
		jobs := tx.Bucket(bucketJobs)
		var idemKey []byte
		if nj.IdempotencyKey != "" {
			idemKey = ownerKey(nj.Owner, nj.IdempotencyKey)
			if id := idem.Get(idemKey); id != nil {
				var r jobRecord
				if _, err := getJSON(jobs, id, &r); err != nil {
					return err
				}
				if !bytes.Equal(r.Request, nj.Request) {
					return fmt.Errorf("idempotency key %q was used for job %s with another request: %w", nj.IdempotencyKey, r.ID, ErrConflict)
				}
				job = r.Job
				return nil
			}
		}
		seq, err := jobs.NextSequence()
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		id := nj.ID
		if id == "" {
			id = newID()
		} else if jobs.Get([]byte(id)) != nil {
			return fmt.Errorf("id %s is taken: %w", id, ErrConflict)
		}
		r := jobRecord{Job: Job{
			ID: id, Owner: nj.Owner, IdempotencyKey: nj.IdempotencyKey, State: state,
			Request: bytes.Clone(nj.Request), Created: now, Updated: now,
		}, Seq: seq}
		if state == Done || state == Failed {
			r.Attempts = 1
		}
		if state != Queued {
			r.Result = bytes.Clone(nj.Result)
		}
		if r.Request == nil {
			r.Request = []byte{}
		}
		if err := putJSON(jobs, []byte(r.ID), r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketJobIndex).Put(seqKey(nj.Owner, seq), []byte(r.ID)); err != nil {
			return err
		}
		if idemKey != nil {
			if err := idem.Put(idemKey, []byte(r.ID)); err != nil {
				return err
			}
		}
		job, created = r.Job, true
		return addUsage(tx, nj.Owner, func(u *Usage) { countState(u, state, +1) })
	})
	if err != nil {
		return Job{}, false, fmt.Errorf("job: %w", err)
	}
	return job, created, nil
}

// JobByKey returns owner's job created with the idempotency key.
func (d *Disk) JobByKey(ctx context.Context, owner, key string) (Job, error) {
	if err := validOwner(owner); err != nil {
		return Job{}, err
	}
	if key == "" {
		return Job{}, fmt.Errorf("job: an empty idempotency key: %w", ErrInvalid)
	}
	var job Job
	err := d.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketIdem).Get(ownerKey(owner, key))
		if id == nil {
			return ErrNotFound
		}
		var r jobRecord
		ok, err := getJSON(tx.Bucket(bucketJobs), id, &r)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		job = r.Job
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("job with idempotency key %q: %w", key, err)
	}
	return job, nil
}

// Job returns owner's job.
func (d *Disk) Job(ctx context.Context, owner, id string) (Job, error) {
	if err := validOwner(owner); err != nil {
		return Job{}, err
	}
	if err := validID("job", id); err != nil {
		return Job{}, err
	}
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	var r jobRecord
	err := d.db.View(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketJobs), []byte(id), &r)
		if err == nil && (!ok || r.Owner != owner) {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", id, err)
	}
	return r.Job, nil
}

// ListJobs lists jobs in the order they were created. With an owner it reads
// that owner's index; without one, every job.
func (d *Disk) ListJobs(ctx context.Context, f JobFilter) ([]Job, error) {
	if f.Owner != "" {
		if err := validOwner(f.Owner); err != nil {
			return nil, err
		}
	}
	if f.State != "" && !f.State.valid() {
		return nil, fmt.Errorf("job state %q: %w", f.State, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var recs []jobRecord
	full := func() bool { return f.Limit > 0 && len(recs) >= f.Limit }
	keep := func(v []byte) error {
		var r jobRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if f.State == "" || r.State == f.State {
			recs = append(recs, r)
		}
		return nil
	}
	err := d.db.View(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		if f.Owner != "" {
			prefix := ownerPrefix(f.Owner)
			c := tx.Bucket(bucketJobIndex).Cursor()
			for k, id := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && !full(); k, id = c.Next() {
				if err := keep(jobs.Get(id)); err != nil {
					return err
				}
			}
			return nil
		}
		return jobs.ForEach(func(_, v []byte) error { return keep(v) })
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	if f.Limit > 0 && len(recs) > f.Limit {
		recs = recs[:f.Limit]
	}
	out := make([]Job, len(recs))
	for i, r := range recs {
		out[i] = r.Job
	}
	return out, nil
}

// Transition moves a job from one state to another if it is in the first.
func (d *Disk) Transition(ctx context.Context, id string, from, to State, result []byte) (Job, error) {
	if err := validID("job", id); err != nil {
		return Job{}, err
	}
	if !allowed[[2]State{from, to}] {
		return Job{}, fmt.Errorf("job %s: no move from %q to %q: %w", id, from, to, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	var r jobRecord
	err := d.db.Batch(func(tx *bolt.Tx) error { // see CreateJob
		r = jobRecord{}
		jobs := tx.Bucket(bucketJobs)
		ok, err := getJSON(jobs, []byte(id), &r)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if r.State != from {
			return fmt.Errorf("is %s, not %s: %w", r.State, from, ErrConflict)
		}
		r.State, r.Updated = to, time.Now().UTC()
		if to == Running || (from == Queued && (to == Done || to == Failed)) {
			r.Attempts++
		}
		if result != nil {
			r.Result = bytes.Clone(result)
		}
		if err := putJSON(jobs, []byte(id), r); err != nil {
			return err
		}
		return addUsage(tx, r.Owner, func(u *Usage) { countState(u, from, -1); countState(u, to, +1) })
	})
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", id, err)
	}
	return r.Job, nil
}
