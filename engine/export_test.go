package engine

// Compiles reports how many times e has compiled a module, cache misses.
func Compiles(e *Engine) int64 { return e.compiles.Load() }

// WithCloseOnContextDone returns cfg with wazero's check of the context at
// every loop iteration turned on, the way guests were stopped before
// instrumentation; with Uninterruptible set it is that old engine.
func WithCloseOnContextDone(cfg Config) Config {
	cfg.closeOnContextDone = true
	return cfg
}
