// Package layout has no code: its tests keep the import rules that
// docs/architecture.md states, so that a change that breaks one fails.
package layout
