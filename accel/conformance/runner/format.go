package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// aggregate is the results of one operation on one backend taken together.
type aggregate struct {
	op, backend       string
	skipped           bool // the backend was not run
	cases, exactCases int
	elements          int
	identical         int
	maxULP            int64
	sumULP            float64
	compared          int
	nanInf, nanBits   int
	signedZero        int
	errors, failures  int
	stable, unstable  int // run-to-run checks that held and that did not
	tInvariant, tVary int
	bInvariant, bVary int
}

func (a *aggregate) add(r Result) {
	a.cases++
	if r.Error != "" {
		a.errors++
	} else if r.BitExact {
		a.exactCases++
	}
	if r.Failed {
		a.failures++
	}
	a.elements += r.Elements
	a.identical += r.Identical
	a.maxULP = max(a.maxULP, r.MaxULP)
	a.sumULP += r.sumULP
	a.compared += r.compared
	a.nanInf += r.NaNInfMismatches
	a.nanBits += r.NaNBitsMismatches
	a.signedZero += r.SignedZeroMismatches
	count := func(b *bool, yes, no *int) {
		switch {
		case b == nil:
		case *b:
			*yes++
		default:
			*no++
		}
	}
	count(r.RunToRunStable, &a.stable, &a.unstable)
	count(r.ThreadInvariant, &a.tInvariant, &a.tVary)
	count(r.BatchInvariant, &a.bInvariant, &a.bVary)
}

func (a *aggregate) meanULP() float64 {
	if a.compared == 0 {
		return 0
	}
	return a.sumULP / float64(a.compared)
}

// aggregates groups results by operation and backend, in report order; a
// skipped backend has an empty aggregate for every operation.
func (r *Report) aggregates() []*aggregate {
	index := map[[2]string]*aggregate{}
	for _, res := range r.Results {
		k := [2]string{res.Op, res.Backend}
		a := index[k]
		if a == nil {
			a = &aggregate{op: res.Op, backend: res.Backend}
			index[k] = a
		}
		a.add(res)
	}
	var list []*aggregate
	for _, op := range r.ops {
		for _, name := range r.backends {
			if r.Summary[name].SkippedReason != "" {
				list = append(list, &aggregate{op: op, backend: name, skipped: true})
			} else if a := index[[2]string{op, name}]; a != nil {
				list = append(list, a)
			}
		}
	}
	return list
}

// distance describes how far results lie from the reference's: the largest
// distance in ulps over the elements where both are finite, then the
// mismatches ulps do not measure. It reads "max 0 ulp" only when nothing
// differs.
func distance(maxULP int64, nanInf, nanBits, signedZero int) string {
	var kinds []string
	for _, k := range []struct {
		n    int
		what string
	}{{nanInf, "NaN/Inf"}, {nanBits, "NaN-bit"}, {signedZero, "±0"}} {
		if k.n > 0 {
			kinds = append(kinds, thousands(int64(k.n))+" "+k.what)
		}
	}
	var parts []string
	if maxULP > 0 || len(kinds) == 0 {
		parts = append(parts, "max "+thousands(maxULP)+" ulp")
	}
	if n := len(kinds); n > 0 {
		list := kinds[0]
		if n > 1 {
			list = strings.Join(kinds[:n-1], ", ") + " and " + kinds[n-1]
		}
		parts = append(parts, list+" mismatches")
	}
	return strings.Join(parts, ", ")
}

// share formats identical of total as a percentage that reads 100% only
// when all are identical.
func share(identical, total int) string {
	if total == 0 {
		return "-"
	}
	if identical == total {
		return "100%"
	}
	return strconv.FormatFloat(math.Floor(1000*float64(identical)/float64(total))/10, 'f', 1, 64) + "%"
}

// invariance formats a check's outcome over cases: ok, - (never checked) or
// how many cases broke it.
func invariance(held, broke int) string {
	switch {
	case broke > 0:
		return fmt.Sprintf("NO (%d)", broke)
	case held > 0:
		return "ok"
	}
	return "-"
}

func yes(b *bool) string {
	switch {
	case b == nil:
		return "-"
	case *b:
		return "ok"
	}
	return "NO"
}

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func meanText(m float64) string {
	switch {
	case m == 0:
		return "0"
	case m < 0.01:
		return strconv.FormatFloat(m, 'e', 1, 64)
	case m < 100:
		return strconv.FormatFloat(m, 'f', 2, 64)
	}
	return strconv.FormatFloat(m, 'g', 4, 64)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// tableColumns are the columns of the table, after OP and BACKEND.
const tableColumns = 11

// legend explains the table's columns and marks.
var legend = []string{
	"CASES: cases run; skipped: the backend did not run (the reason is below).",
	"BIT-EXACT: cases whose every output has the reference's bits, of those run; (n errors): calls that failed.",
	"IDENTICAL: output elements with the reference's bits; 100% only when all are.",
	"MAX ULP, MEAN ULP: distance from the reference in float32 steps, over the elements where both are finite.",
	"  Steps are counted across zero, so a value near zero can be a billion ulps from one of the other sign",
	"  that is close in value, as where a sum cancels or a divergence is near 0: read large figures so.",
	"NAN/INF: elements where one is NaN or ±Inf and the other not the same; NAN BITS: both NaN, with other bits",
	"  (the contract writes NaN as 0x7fc00000); ±0: -0 against +0. Ulps do not count these, so a case that is",
	"  not bit-exact with MAX ULP 0 differs in them alone.",
	"RUN-TO-RUN, THREADS, BATCH: the same bits when the case runs again, on another thread count, and for part",
	"  of the batch computed alone (rows of a matmul, softmax or add, an image of a conv2d or maxpool2d):",
	"  ok in every case checked; NO (n): not so in n cases; -: not checked.",
}

// WriteTable writes one row per operation × backend, aggregated over the
// cases, then with verbose one row per case, then a legend of the columns,
// the summary and the failures.
func (r *Report) WriteTable(w io.Writer, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OP\tBACKEND\tCASES\tBIT-EXACT\tIDENTICAL\tMAX ULP\tMEAN ULP\tNAN/INF\tNAN BITS\t±0\tRUN-TO-RUN\tTHREADS\tBATCH\t")
	for _, a := range r.aggregates() {
		if a.skipped {
			// Every cell, so that the columns stay one block.
			fmt.Fprintf(tw, "%s\t%s\tskipped\t%s\n", a.op, a.backend, strings.Repeat("-\t", tableColumns-1))
			continue
		}
		exact := fmt.Sprintf("%d/%d", a.exactCases, a.cases)
		if a.errors > 0 {
			exact += fmt.Sprintf(" (%d errors)", a.errors)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", a.op, a.backend, a.cases, exact,
			share(a.identical, a.elements), thousands(a.maxULP), meanText(a.meanULP()), a.nanInf, a.nanBits, a.signedZero,
			invariance(a.stable, a.unstable), invariance(a.tInvariant, a.tVary), invariance(a.bInvariant, a.bVary))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if verbose {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OP\tBACKEND\tCASE\tELEMENTS\tBIT-EXACT\tIDENTICAL\tMAX ULP\tMEAN ULP\tNAN/INF\tNAN BITS\t±0\tRUN-TO-RUN\tTHREADS\tBATCH\tNOTE")
		for _, res := range r.Results {
			note := res.Error
			if note == "" {
				note = strings.Join(res.Notes, "; ")
			}
			if len(res.Outputs) > 1 && res.Error == "" && !res.BitExact {
				var outs []string
				for _, d := range res.Outputs {
					outs = append(outs, fmt.Sprintf("%s %s identical, %s", d.Name, share(d.Identical, d.Elements), distance(d.MaxULP, d.NaNInf, d.NaNBits, d.SignedZero)))
				}
				note = strings.TrimPrefix(note+"; "+strings.Join(outs, "; "), "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", res.Op, res.Backend, res.Case, res.Elements,
				yes(&res.BitExact), share(res.Identical, res.Elements), thousands(res.MaxULP), meanText(res.MeanULP),
				res.NaNInfMismatches, res.NaNBitsMismatches, res.SignedZeroMismatches,
				yes(res.RunToRunStable), yes(res.ThreadInvariant), yes(res.BatchInvariant), note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	for _, line := range legend {
		fmt.Fprintln(w, line)
	}

	fmt.Fprintln(w)
	for _, name := range r.backends {
		s := r.Summary[name]
		if s.SkippedReason != "" {
			fmt.Fprintf(w, "%s: skipped: %s\n", name, s.SkippedReason)
			continue
		}
		threads := ""
		if len(s.ThreadCounts) == 2 {
			threads = fmt.Sprintf(", threads %d vs %d", s.ThreadCounts[0], s.ThreadCounts[1])
		}
		errors := ""
		if s.Errors > 0 {
			errors = fmt.Sprintf(", %d errors", s.Errors)
		}
		fmt.Fprintf(w, "%s: %d of %d cases bit-exact with %s, %s%s, %d failures (%s mode%s)\n", name, s.BitExactCases, s.Cases, r.Reference,
			distance(s.MaxULP, s.NaNInfMismatch, s.NaNBitsMismatch, s.SignedZeroMismatch), errors, s.Failures, r.Mode, threads)
	}
	if g := r.Guest; g != nil {
		fmt.Fprintf(w, "\nguest %s:\n", strings.Join(append([]string{g.Module}, g.Args...), " "))
		failed := false
		for _, run := range g.Runs {
			if run.Error != "" {
				failed = true
				fmt.Fprintf(w, "  %s: error: %s\n", run.Backend, run.Error)
				continue
			}
			fmt.Fprintf(w, "  %s: stdout sha256 %s\n", run.Backend, run.SHA256)
		}
		switch {
		case failed:
			fmt.Fprintln(w, "  not every run succeeded")
		case g.Agree:
			fmt.Fprintln(w, "  every backend printed the same output")
		default:
			fmt.Fprintln(w, "  the backends' outputs differ")
		}
	}
	fails := r.Failures()
	if len(fails) > 0 {
		fmt.Fprintf(w, "\n%d failures:\n", len(fails))
		for i, f := range fails {
			if i == 20 {
				fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(fails)-i)
				break
			}
			fmt.Fprintln(w, "  "+f)
		}
	}
	return nil
}

// WriteMarkdown writes a backend × operation matrix: bit-exact, or how many
// cases were and the largest distance, for docs/determinism.md.
func (r *Report) WriteMarkdown(w io.Writer) error {
	aggs := map[[2]string]*aggregate{}
	var ops []string
	for _, a := range r.aggregates() {
		aggs[[2]string{a.backend, a.op}] = a
		if len(ops) == 0 || ops[len(ops)-1] != a.op {
			ops = append(ops, a.op)
		}
	}
	fmt.Fprintf(w, "| backend | %s |\n", strings.Join(ops, " | "))
	fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" --- |", len(ops)))
	for _, name := range r.backends {
		cells := []string{name}
		for _, op := range ops {
			a := aggs[[2]string{name, op}]
			var cell string
			switch {
			case a == nil:
				cell = "-"
			case a.skipped:
				cell = "skipped"
			case a.errors > 0:
				cell = fmt.Sprintf("%d errors", a.errors)
			case a.exactCases == a.cases:
				cell = fmt.Sprintf("bit-exact (%d/%d)", a.exactCases, a.cases)
			default:
				cell = fmt.Sprintf("no: %d/%d bit-exact, %s identical, %s", a.exactCases, a.cases,
					strings.Replace(share(a.identical, a.elements), "%", " %", 1), distance(a.maxULP, a.nanInf, a.nanBits, a.signedZero))
			}
			if a != nil && !a.skipped {
				var broken []string
				for _, b := range []struct {
					name string
					n    int
				}{{"run to run", a.unstable}, {"thread count", a.tVary}, {"batch", a.bVary}} {
					if b.n > 0 {
						broken = append(broken, fmt.Sprintf("%s %d", b.name, b.n))
					}
				}
				if len(broken) > 0 {
					cell += "; varies with " + strings.Join(broken, ", ")
				}
			}
			cells = append(cells, cell)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "`accelnode conformance` in %s mode against %s, %s corpus, each case run %d times, on %s (%d CPUs).",
		r.Mode, r.Reference, r.Corpus, r.Repeat, r.Machine.CPU, r.Machine.CPUs)
	fmt.Fprint(w, " Ulps count float32 steps, across zero, over the elements where both results are finite;"+
		" NaN/Inf, NaN-bit and ±0 mismatches are the elements they do not measure."+
		" \"Varies with\" counts the cases where a repeated run, another thread count or part of the batch computed alone gave other bits.")
	for _, name := range r.backends {
		if s := r.Summary[name]; s.SkippedReason != "" {
			fmt.Fprintf(w, " %s skipped: %s.", name, s.SkippedReason)
		}
	}
	fmt.Fprintln(w)
	if g := r.Guest; g != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| backend | guest stdout sha256 |")
		fmt.Fprintln(w, "| --- | --- |")
		for _, run := range g.Runs {
			v := "`" + run.SHA256 + "`"
			if run.Error != "" {
				v = "error: " + run.Error
			}
			fmt.Fprintf(w, "| %s | %s |\n", run.Backend, v)
		}
	}
	return nil
}
