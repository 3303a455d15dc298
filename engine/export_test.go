package engine

// Compiles reports how many times e has compiled a module, cache misses.
func Compiles(e *Engine) int64 { return e.compiles.Load() }
