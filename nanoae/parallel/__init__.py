"""Data parallel: the same training on several processes (MPI ranks), each with its share.

    communicator.py   Communicator and world(): ranks, machines, GPUs, faults; the job's collectives
    engines/          one class per way of moving arrays: MPI (NumPy), NCCL (CuPy)
    zero.py           ShardedOptimizer (ZeRO-1): each rank steps and holds 1/N of the optimizer state
    threads.py        BLAS threads per rank: the machine's cores divided among its ranks

Imports the core only; ``nanoae.train`` uses it when ``fit`` runs under ``mpiexec``.
"""
