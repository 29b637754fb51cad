//! One method per route, typed.
