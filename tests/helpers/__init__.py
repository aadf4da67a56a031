"""Test helpers, not tests: a CuPy stand-in, a fake NCCL, ranks as threads, IDX files, an MPI worker."""
