package bench

import (
	"slices"
	"time"
)

// Stats summarises the times of one measurement.
type Stats struct {
	Reps   int     `json:"reps"`
	Median float64 `json:"median_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
	// Noise is the median absolute deviation over the median: a spread
	// that one slow outlier does not inflate.
	Noise float64 `json:"noise"`
}

// Summarize computes the statistics of times, which must not be empty.
func Summarize(times []time.Duration) Stats {
	s := make([]float64, len(times))
	for i, t := range times {
		s[i] = t.Seconds()
	}
	slices.Sort(s)
	st := Stats{Reps: len(s), Median: median(s), Min: s[0], Max: s[len(s)-1]}
	dev := make([]float64, len(s))
	for i, v := range s {
		dev[i] = abs(v - st.Median)
	}
	slices.Sort(dev)
	if st.Median > 0 {
		st.Noise = median(dev) / st.Median
	}
	return st
}

// median of sorted values: the middle one, or the mean of the middle two.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
