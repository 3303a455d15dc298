package instrument

import "testing"

// BenchmarkLoops times the loop guest's tight loops plain and instrumented;
// the goal is that metered runs at 0.8 of plain speed or better. The
// per-run instantiation is in both.
func BenchmarkLoops(b *testing.B) {
	bin := loopGuestBin(b)
	for _, w := range [][]string{{"matmul", "160"}, {"parse", "2000000"}} {
		for _, v := range []struct {
			name string
			opt  *Options
		}{{"plain", nil}, {"meter", &Options{Meter: true}}, {"meter+nan", &Options{Meter: true, CanonicalNaNs: true}}} {
			mod := bin
			if v.opt != nil {
				var err error
				if mod, err = Instrument(bin, *v.opt); err != nil {
					b.Fatal(err)
				}
			}
			run := wasiRun(b, mod)
			b.Run(w[0]+"/"+v.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					run(w...)
				}
			})
		}
	}
}

// BenchmarkInstrument times the rewrite itself on the loop guest.
func BenchmarkInstrument(b *testing.B) {
	bin := loopGuestBin(b)
	b.SetBytes(int64(len(bin)))
	for i := 0; i < b.N; i++ {
		if _, err := Instrument(bin, Options{Meter: true, CanonicalNaNs: true}); err != nil {
			b.Fatal(err)
		}
	}
}
