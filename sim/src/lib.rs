//! dkv-sim: the deterministic simulator.
