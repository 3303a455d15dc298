// Package instrument rewrites a WebAssembly binary once, at load, before
// wazero compiles it: for deterministic instruction metering with cheap
// deadline checks, and for canonical NaNs.
//
// Modules are decoded and encoded with wabin, with the WebAssembly 2.0 core
// features on (sign extension, non-trapping float-to-int, bulk memory,
// multi-value, reference types, SIMD): what Go (GOOS=wasip1), clang with
// wasi-libc and Rust's wasm32-wasi emit. Function bodies are walked by this
// package, which knows every 2.0 opcode, the 0xFC and 0xFD prefixes
// included; an opcode it does not know (threads, exceptions, relaxed SIMD,
// GC) is refused with an error, as is any input it cannot read. The
// structure is checked before wabin reads it, so a short input cannot make
// the decoder allocate by the counts it claims.
//
// What survives: every section, in canonical order. The name section keeps
// its module, function and local names, re-indexed (the refill import is
// named accelnode_meter.refill); its other subsections (labels, types, ...)
// are dropped, since wabin does not read them. When bodies are rewritten,
// custom sections that point into them by byte offset (.debug_*,
// sourceMappingURL, external_debug_info) are dropped; others are kept as
// they are.
//
// # Metering
//
// With Options.Meter the module gets one mutable i64 global, initially 0 and
// exported as FuelExport, and one imported function ImportModule.ImportName
// of type (i64) -> (i64), appended after the other function imports: only
// defined functions move, up by one, and every reference to them follows
// (call, return_call, ref.func, element segments, exports, the start
// function, global initialisers, the name section). A module that already
// imports from ImportModule, or imports or exports FuelExport, is refused.
//
// A basic block is charged its static cost when it is entered, as
//
//	global.get $fuel; i64.const cost; i64.sub; global.set $fuel
//
// so a block that traps part way has been charged in full. The blocks are
// the straight-line runs that start at the function's entry, after loop,
// after if, else and br_if, and after the end of an if, or of a block that a
// branch targets. The end of a loop or of a block no branch targets is
// reached only by falling through, so the code after it joins the run
// before it, as does the code after block. A call does not end a block: the
// callee charges its own blocks. Unreachable code is not charged, nor is a
// run that costs nothing.
//
// At the function's entry and at each loop header the charge is followed by
// a check:
//
//	global.get $fuel; i64.const 0; i64.lt_s
//	if; global.get $fuel; call $refill; global.set $fuel; end
//
// A loop that takes and gives no values (blocktype empty, as Go, clang and
// rustc emit them) keeps that call outside itself, since a call inside a
// loop, even one never taken, makes the compiler keep the loop's values out
// of registers (it cost tight loops a third of their speed):
//
//	block $done; loop $outer; block $slow
//	  loop $L
//	    header charge; global.get $fuel; i64.const 0; i64.lt_s; br_if $slow
//	    ...
//	  end; br $done
//	end
//	global.get $fuel; call $refill; i64.const header; i64.add; global.set $fuel
//	br $outer
//	end; end
//
// Branches out of $L leave the three labels too, and their depths grow by
// three. The refill path gives back the header's cost because the header
// is charged again as the loop is entered again, so the count is as if the
// check had called refill in place.
//
// Every cycle, by a loop or by recursion, passes a check, so a guest whose
// fuel runs out crosses into the host within one trip round a loop. Refill
// gets the fuel, now negative, and returns the new fuel, or traps. The host
// keeps the total it granted: what the guest used is that total less the
// fuel global's value, exact at any crossing and at the end of a call. The
// guest may run past its fuel by at most the cost of the blocks up to its
// next check; a host that settles at the end as well sees the overrun. The
// count is the sum of the costs of the blocks entered, the same on every
// machine.
//
// # Costs
//
// Cost gives the charge of each instruction; by class:
//
//	0     block, loop, else, end, nop
//	4     i32/i64 div_s, div_u, rem_s, rem_u; f32/f64 div and sqrt
//	8     f32x4/f64x2 div and sqrt
//	16    memory.copy, memory.fill, memory.init, table.copy, table.init,
//	      table.fill, table.grow: flat; the length is not charged
//	1000  memory.grow: flat
//	1     every other instruction, call and call_indirect included
//
// # Canonical NaNs
//
// With Options.CanonicalNaNs every instruction that CanonicalisedOps lists
// is followed by a rewrite of a NaN result to the canonical quiet NaN
// (0x7fc00000 for f32, 0x7ff8000000000000 for f64, per lane for SIMD):
//
//	local.tee $t; f32.const nan; local.get $t; local.get $t; f32.eq; select
//	local.tee $v; v128.const nan x4; local.get $v; local.get $v; f32x4.eq; v128.bitselect
//
// with one scratch local per type, added after the function's own. neg,
// abs, copysign, loads, stores, moves, reinterpretations and constants keep
// their bits, as WebAssembly requires; conversions from integers cannot make
// a NaN. The rewrite is not charged: a guest's count is the same with it or
// without it.
//
// Version names the rewrites, for caches of instrumented modules.
package instrument
