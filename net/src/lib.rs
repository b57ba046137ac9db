//! dkv-net: the real runtime (issue 4).
