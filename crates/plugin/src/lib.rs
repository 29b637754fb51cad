//! The WebAssembly plugin host: wasmtime components built against the WIT
//! package `berth:plugin` (`proto/wit/`), run with no ambient authority and
//! with a memory cap and a CPU deadline per call.
