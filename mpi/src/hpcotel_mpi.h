/*
 * The boundary between the PMPI wrappers (shim.c, compiled with the installed mpicc against
 * its mpi.h) and the Rust recorder (lib.rs). Everything that needs MPI types or calls lives in
 * C; everything that needs no MPI (histograms, spans, OTLP encoding, export) lives in Rust.
 *
 * Contract for every function below: it never blocks on the network, never calls MPI, never
 * unwinds into C (a panic disables the recorder for this rank and is reported once on
 * stderr), and is cheap enough for the per-call path. Times are CLOCK_MONOTONIC nanoseconds.
 */
#ifndef HPCOTEL_MPI_H
#define HPCOTEL_MPI_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the job context rank 0 broadcasts at MPI_Init: trace id (16), job span id (8),
 * trace flags (1), enabled (1). */
#define HPCOTEL_CTX_LEN 26
/* Byte offset of the "enabled" flag in the context: 0 turns the wrappers off on every rank. */
#define HPCOTEL_CTX_ENABLED 25
/* Host name bytes per rank gathered to rank 0 (NUL-padded). */
#define HPCOTEL_HOST_LEN 64
/* Synchronising collectives on MPI_COMM_WORLD between two straggler reductions. */
#define HPCOTEL_WINDOW 1024
/* Bytes of a phase name copied from MPI_Pcontrol, NUL included. */
#define HPCOTEL_PHASE_LEN 256
/* Bits of hpcotel_mpi_init_begin's answer. */
#define HPCOTEL_INIT_RECORD 1      /* this rank wants to record */
#define HPCOTEL_INIT_COLLECTIVES 2 /* use the library's own collectives (HPCOTEL_MPI_COLLECTIVES) */
#define HPCOTEL_INIT_PHASE_NAMES 4 /* read MPI_Pcontrol names (HPCOTEL_MPI_PCONTROL_NAMES) */

/* Operations; the numbers are shared with Rust's `Op` (lib.rs). */
enum hpcotel_op {
    HPCOTEL_OP_ALLREDUCE = 0,
    HPCOTEL_OP_REDUCE = 1,
    HPCOTEL_OP_BCAST = 2,
    HPCOTEL_OP_BARRIER = 3,
    HPCOTEL_OP_ALLGATHER = 4,
    HPCOTEL_OP_ALLGATHERV = 5,
    HPCOTEL_OP_ALLTOALL = 6,
    HPCOTEL_OP_ALLTOALLV = 7,
    HPCOTEL_OP_REDUCE_SCATTER = 8,
    HPCOTEL_OP_REDUCE_SCATTER_BLOCK = 9,
    HPCOTEL_OP_GATHER = 10,
    HPCOTEL_OP_GATHERV = 11,
    HPCOTEL_OP_SCATTER = 12,
    HPCOTEL_OP_SCATTERV = 13,
    HPCOTEL_OP_SEND = 14,
    HPCOTEL_OP_SSEND = 15,
    HPCOTEL_OP_RECV = 16,
    HPCOTEL_OP_SENDRECV = 17,
    HPCOTEL_OP_ISEND = 18,
    HPCOTEL_OP_IRECV = 19,
    HPCOTEL_OP_WAIT = 20,
    HPCOTEL_OP_WAITALL = 21,
    HPCOTEL_OP_WAITANY = 22,
    HPCOTEL_OP_WAITSOME = 23,
    HPCOTEL_OP_TEST = 24,
    HPCOTEL_OP_TESTALL = 25,
    HPCOTEL_OP_TESTANY = 26,
    HPCOTEL_OP_FILE_OPEN = 27,
    HPCOTEL_OP_FILE_CLOSE = 28,
    HPCOTEL_OP_FILE_READ = 29,
    HPCOTEL_OP_FILE_WRITE = 30,
    HPCOTEL_OP_FILE_READ_AT = 31,
    HPCOTEL_OP_FILE_WRITE_AT = 32,
    HPCOTEL_OP_FILE_READ_ALL = 33,
    HPCOTEL_OP_FILE_WRITE_ALL = 34,
    HPCOTEL_OP_FILE_READ_AT_ALL = 35,
    HPCOTEL_OP_FILE_WRITE_AT_ALL = 36,
    HPCOTEL_OP_COUNT = 37
};

/* MPI_Init / MPI_Init_thread, after PMPI_Init succeeded. `library_version` is
 * MPI_Get_library_version's string. Returns HPCOTEL_INIT_* bits. With COLLECTIVES, rank 0's
 * context decides for the job (it is broadcast); without, every rank derives the same
 * context on its own (from TRACEPARENT or the job id) and there are no straggler reductions.
 * HPCOTEL_MPI_COLLECTIVES must be the same on every rank. */
int hpcotel_mpi_init_begin(int rank, int size, uint64_t init_start_ns, const char *library_version);
/* Writes the job context (trace id, job span id, flags, enabled) to `ctx`: on rank 0 with
 * COLLECTIVES (then broadcast), on every rank without. */
void hpcotel_mpi_context(unsigned char ctx[HPCOTEL_CTX_LEN]);
/* This rank's host name, NUL-padded, for the host gather. */
void hpcotel_mpi_hostname(char host[HPCOTEL_HOST_LEN]);
/* Every rank, after the broadcast and the host gather: `hosts` is size * HPCOTEL_HOST_LEN
 * bytes on rank 0 and NULL elsewhere. Starts the export thread. */
void hpcotel_mpi_init_end(const unsigned char ctx[HPCOTEL_CTX_LEN], const char *hosts);

/* One intercepted call. `comm_size` 0 when unknown (MPI-IO independent calls), `bytes` -1
 * when not meaningful, `peer` the peer or root rank or -1, `window` 1 for a synchronising
 * collective on MPI_COMM_WORLD (its duration joins the straggler window). */
void hpcotel_mpi_record(int op, int comm_size, int64_t bytes, int peer, uint64_t t0_ns, uint64_t t1_ns, int window);

/* MPI_Pcontrol(level, name): level 1 opens the phase `name`, level -1 closes it (the IPM
 * convention). Other levels are ignored. `name` was copied by the wrapper (never NULL). */
void hpcotel_mpi_phase(int level, const char *name, uint64_t t_ns);

/* Copies this rank's straggler window (durations in ns of the synchronising world
 * collectives since the last reduction, at most `cap`) to `out`, clears it, returns the
 * count. */
size_t hpcotel_mpi_window(double *out, size_t cap);
/* Rank 0 only: for each of `n` calls, the shortest time any rank spent inside (`min_ns`),
 * that rank (`min_rank`: it arrived last) and the longest time (`max_ns`). */
void hpcotel_mpi_window_reduced(const double *min_ns, const int *min_rank, const double *max_ns, size_t n);

/* MPI_Finalize, after the final straggler reduction and before PMPI_Finalize: ends the phases,
 * the rank span and (rank 0) the job span, then flushes everything, waiting at most
 * HPCOTEL_MPI_FLUSH_TIMEOUT. This one may block, up to that bound. */
void hpcotel_mpi_finalize(uint64_t t_ns);
/* MPI_Abort, before PMPI_Abort: marks the spans failed and flushes (bounded, as above). */
void hpcotel_mpi_abort(int errorcode, uint64_t t_ns);
/* Process exit (a destructor): when MPI_Finalize never ran, ends the spans as failed and
 * flushes (bounded). Does nothing otherwise. */
void hpcotel_mpi_exit(uint64_t t_ns);

#endif
