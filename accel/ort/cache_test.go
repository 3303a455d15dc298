package ort

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// noSession is a create function for cache tests that need no real
// session.
func noSession() (created, error) { return created{}, nil }

// TestCacheLRU checks the cache's order, bound and counts on keys alone.
func TestCacheLRU(t *testing.T) {
	c := newSessionCache(3)
	ctx := t.Context()
	get := func(key string) {
		t.Helper()
		e, err := c.acquire(ctx, key, noSession)
		if err != nil {
			t.Fatalf("acquire %s: %v", key, err)
		}
		c.release(e)
	}
	for _, key := range []string{"a", "b", "c", "a", "d", "a", "e"} {
		get(key)
	}
	// d evicted b (the least recently used), e evicted c.
	want := CacheCounts{Sessions: 3, Capacity: 3, Hits: 2, Misses: 5, Evictions: 2}
	if got := c.stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		key    string
		cached bool
	}{{"a", true}, {"d", true}, {"e", true}, {"b", false}, {"c", false}} {
		if _, ok := c.entries[tc.key]; ok != tc.cached {
			t.Errorf("%s cached: %t, want %t", tc.key, ok, tc.cached)
		}
	}
}

// TestCacheCreateFailure checks that a failed creation reaches the caller
// and is not kept: the next lookup tries again.
func TestCacheCreateFailure(t *testing.T) {
	c := newSessionCache(4)
	boom := errors.New("boom")
	calls := 0
	create := func() (created, error) {
		calls++
		return created{}, boom
	}
	for range 2 {
		if _, err := c.acquire(t.Context(), "k", create); !errors.Is(err, boom) {
			t.Fatalf("acquire: %v, want the creation's error", err)
		}
	}
	if st := c.stats(); calls != 2 || st.Sessions != 0 || st.Misses != 2 {
		t.Fatalf("%d creations, stats %+v; want 2 creations and nothing cached", calls, st)
	}
}

// TestCacheWaitsForCreation checks that callers of a key being created
// wait for it, or give up when their context ends.
func TestCacheWaitsForCreation(t *testing.T) {
	c := newSessionCache(4)
	started, finish := make(chan struct{}), make(chan struct{})
	creator := make(chan error)
	go func() {
		e, err := c.acquire(context.Background(), "k", func() (created, error) {
			close(started)
			<-finish
			return created{}, nil
		})
		if err == nil {
			c.release(e)
		}
		creator <- err
	}()
	<-started
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.acquire(cancelled, "k", noSession); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting with a cancelled context: %v, want context.Canceled", err)
	}
	waiter := make(chan error)
	go func() {
		e, err := c.acquire(context.Background(), "k", func() (created, error) {
			return created{}, errors.New("created twice")
		})
		if err == nil {
			c.release(e)
		}
		waiter <- err
	}()
	close(finish)
	if err := <-creator; err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; err != nil {
		t.Fatal(err)
	}
	if st := c.stats(); st.Misses != 1 || st.Hits != 2 {
		t.Fatalf("stats %+v, want 1 miss and 2 hits", st)
	}
}

// TestCacheKeepsSessionsInUse evicts and closes sessions while calls hold
// them: they must keep working until released, and be destroyed then.
func TestCacheKeepsSessionsInUse(t *testing.T) {
	b := backend(t, 1)
	b.ops = newSessionCache(2)
	ctx := t.Context()
	x := make([]float32, 64)
	y := make([]float32, 64)
	for i := range x {
		x[i] = float32(i) - 32
	}
	runRelu := func(e *cacheEntry) error {
		in, err := wrap([][]float32{x}, [][]int{{64}})
		if err != nil {
			return err
		}
		out, err := wrap([][]float32{y}, [][]int{{64}})
		if err != nil {
			in.destroy()
			return err
		}
		return runOp(ctx, e.session, in, out)
	}
	held, err := b.opSession(ctx, "held", reluGraph)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e, err := b.opSession(ctx, fmt.Sprint("other ", i), reluGraph)
		if err != nil {
			t.Fatal(err)
		}
		b.ops.release(e)
	}
	if st := b.CacheStats().Ops; st.Sessions != 2 || st.Evictions != 2 {
		t.Fatalf("stats %+v, want 2 sessions and 2 evictions", st)
	}
	if _, cached := b.ops.entries["held"]; cached {
		t.Fatal("the held session was not evicted")
	}
	if err := runRelu(held); err != nil {
		t.Fatalf("run on an evicted session still held: %v", err)
	}
	if y[0] != 0 || y[63] != 31 {
		t.Fatalf("relu gave %g and %g, want 0 and 31", y[0], y[63])
	}
	b.ops.release(held)
	if held.session != nil {
		t.Fatal("an evicted session was not destroyed on its last release")
	}

	// Close with a session in use: it is destroyed on release.
	inUse, err := b.opSession(ctx, "in use", reluGraph)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := runRelu(inUse); err != nil {
		t.Fatalf("run on a session held across Close: %v", err)
	}
	b.ops.release(inUse)
	if inUse.session != nil {
		t.Fatal("a session held across Close was not destroyed on release")
	}
	if _, err := b.opSession(ctx, "after", reluGraph); !errors.Is(err, accel.ErrDevice) {
		t.Fatalf("lookup after Close: %v, want ErrDevice", err)
	}
}

// TestCacheBound calls conv2d and maxpool2d with many distinct strides, as
// a guest varying its parameters would: the cache must stay at its bound,
// count the evictions, and every call must still compute.
func TestCacheBound(t *testing.T) {
	const distinct, bound = 40, 8
	b := backend(t, 1)
	b.ops = newSessionCache(bound)
	s := session(t, b)
	rng := rand.New(rand.NewPCG(21, 22))
	x := input(t, s, rng, 1, 4, 64, 64)
	w := input(t, s, rng, 4, 4, 3, 3)
	for i := range distinct {
		stride := 1 + i%20
		conv := conv2DParams(stride, 1+i/20, 0, 0, 0, 0, 1, 1, 1)
		if _, err := s.Conv2D(t.Context(), x, w, nil, conv); err != nil {
			t.Fatalf("conv2d %+v: %v", conv, err)
		}
		pool := accel.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: stride, StrideW: 1 + i/20}
		if _, err := s.MaxPool2D(t.Context(), x, pool); err != nil {
			t.Fatalf("maxpool2d %+v: %v", pool, err)
		}
		if st := b.CacheStats().Ops; st.Sessions > bound {
			t.Fatalf("after %d parameter sets the cache holds %d sessions, bound %d", i+1, st.Sessions, bound)
		}
	}
	st := b.CacheStats().Ops
	want := CacheCounts{Sessions: bound, Capacity: bound, Misses: 2 * distinct, Evictions: 2*distinct - bound}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	// The latest parameter set is cached.
	pool := accel.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 1 + (distinct-1)%20, StrideW: 1 + (distinct-1)/20}
	if _, err := s.MaxPool2D(t.Context(), x, pool); err != nil {
		t.Fatal(err)
	}
	if got := b.CacheStats().Ops.Hits; got != 1 {
		t.Fatalf("repeating the last call: %d hits, want 1", got)
	}
}

// TestCacheConcurrent shares a small cache between goroutines calling more
// distinct parameter sets than it holds, so that sessions are evicted
// while others run them: every result must equal the one computed alone.
func TestCacheConcurrent(t *testing.T) {
	b := backend(t, 2)
	b.ops = newSessionCache(3)
	rng := rand.New(rand.NewPCG(23, 24))
	xData := normals(rng, 2*8*64*64)
	compute := func(stride int) ([]float32, error) {
		s, err := accel.NewSession(b, accel.Fast, accel.Limits{}, nil)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		x, err := s.FromFloat32(xData, 2, 8, 64, 64)
		if err != nil {
			return nil, err
		}
		y, err := s.MaxPool2D(t.Context(), x, accel.Pool2DParams{KernelH: 3, KernelW: 3, StrideH: stride, StrideW: stride})
		if err != nil {
			return nil, err
		}
		return s.Float32(y)
	}
	const strides = 6
	want := make([][]float32, strides)
	for i := range strides {
		var err error
		if want[i], err = compute(i + 1); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 24 {
				stride := (g+i)%strides + 1
				got, err := compute(stride)
				if err != nil {
					t.Errorf("stride %d: %v", stride, err)
					return
				}
				if !bitsEqual(got, want[stride-1]) {
					t.Errorf("stride %d: a concurrent result differs", stride)
					return
				}
			}
		})
	}
	wg.Wait()
	st := b.CacheStats().Ops
	if st.Sessions > 3 || st.Hits+st.Misses != strides+6*24 || st.Evictions == 0 {
		t.Fatalf("stats %+v: want at most 3 sessions, %d lookups and some evictions", st, strides+6*24)
	}
}
