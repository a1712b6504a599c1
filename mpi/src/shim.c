/*
 * The PMPI wrappers of libhpcotel_mpi.so, compiled by the installed `mpicc` against its mpi.h
 * (MPI handles are pointers in Open MPI and ints in MPICH, so the wrappers are built per MPI).
 *
 * Each wrapper times its PMPI_ call with CLOCK_MONOTONIC and hands (operation, communicator
 * size, bytes, peer/root, start, end) to the Rust recorder (hpcotel_mpi.h). The job context
 * and the straggler windows travel over a private duplicate of MPI_COMM_WORLD, so the
 * library's own messages never match the application's.
 *
 * Bytes are what this rank contributes: its send buffer (count x type size; all blocks for
 * Alltoall(v)), or, where MPI_IN_PLACE makes MPI ignore the send arguments, the matching
 * receive block — never an argument MPI ignores, since it may hold anything.
 *
 * Every rank takes the same decisions at the same points: the context broadcast at MPI_Init,
 * a straggler reduction every HPCOTEL_WINDOW synchronising collectives on MPI_COMM_WORLD and
 * at MPI_Finalize. Those are counted here, not in Rust, so a rank whose recorder stopped still
 * takes part and the job can never deadlock on the library. With HPCOTEL_MPI_COLLECTIVES=off
 * (MPMD jobs where some ranks run without the library) there are none at all.
 */
#define _GNU_SOURCE
#include <float.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hpcotel_mpi.h"

/* 1 between a successful MPI_Init and MPI_Finalize when the job records. */
static int hp_on = 0;
/* The library's own collectives (context broadcast, straggler reductions) are on. */
static int hp_collectives = 0;
/* MPI_Pcontrol(1|-1, name) reads its name argument. */
static int hp_phase_names = 0;
static int hp_rank = 0;
static int hp_size = 0;
static MPI_Comm hp_comm = MPI_COMM_NULL;
/* Synchronising collectives on MPI_COMM_WORLD since the last straggler reduction. */
static unsigned long hp_world_calls = 0;

static inline uint64_t hp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int hp_comm_size(MPI_Comm comm) {
    int n = 0;
    if (comm == MPI_COMM_NULL || PMPI_Comm_size(comm, &n) != MPI_SUCCESS) return 0;
    return n;
}

/* The number of ranks a per-peer array (Alltoall(v) counts) has: the remote group's size on
 * an intercommunicator, the communicator's size otherwise. */
static int hp_peer_count(MPI_Comm comm) {
    int inter = 0, n = 0;
    if (comm == MPI_COMM_NULL) return 0;
    if (PMPI_Comm_test_inter(comm, &inter) == MPI_SUCCESS && inter) {
        if (PMPI_Comm_remote_size(comm, &n) != MPI_SUCCESS) return 0;
        return n;
    }
    return hp_comm_size(comm);
}

static inline int64_t hp_bytes(int count, MPI_Datatype type) {
    int sz = 0;
    if (type == MPI_DATATYPE_NULL || PMPI_Type_size(type, &sz) != MPI_SUCCESS) return -1;
    return (int64_t)count * (int64_t)sz;
}

/* The sum of a per-peer count array (one entry per rank of the peer group). */
static int64_t hp_bytes_v(const int *counts, MPI_Comm comm, MPI_Datatype type) {
    int n = hp_peer_count(comm), sz = 0;
    int64_t total = 0;
    if (counts == NULL || type == MPI_DATATYPE_NULL || PMPI_Type_size(type, &sz) != MPI_SUCCESS)
        return -1;
    for (int i = 0; i < n; i++) total += counts[i];
    return total * sz;
}

/* This rank's own entry of a per-rank count array (the MPI_IN_PLACE cases, where the
 * rank's send arguments are ignored by MPI and may be anything). */
static int64_t hp_bytes_own(const int *counts, MPI_Comm comm, MPI_Datatype type) {
    int me = 0;
    if (counts == NULL || comm == MPI_COMM_NULL || PMPI_Comm_rank(comm, &me) != MPI_SUCCESS)
        return -1;
    return hp_bytes(counts[me], type);
}

/* Straggler reduction buffers: static, so a reduction never allocates and never fails on
 * one rank only. */
static double hp_win[HPCOTEL_WINDOW];
static double hp_win_max[HPCOTEL_WINDOW];
static struct { double v; int rank; } hp_win_pair[HPCOTEL_WINDOW], hp_win_min[HPCOTEL_WINDOW];
static double hp_out_min[HPCOTEL_WINDOW];
static int hp_out_rank[HPCOTEL_WINDOW];

/* Reduces every rank's window of synchronising world-collective durations to rank 0: per
 * call, the shortest time inside and its rank (MINLOC: who arrived last) and the longest
 * (MAX). O(window) per rank and log(size) steps, whatever the job's size. */
static void hp_reduce_window(void) {
    long n = (long)hpcotel_mpi_window(hp_win, HPCOTEL_WINDOW), common = 0;
    if (PMPI_Allreduce(&n, &common, 1, MPI_LONG, MPI_MIN, hp_comm) != MPI_SUCCESS || common <= 0)
        return;
    for (long i = 0; i < common; i++) {
        hp_win_pair[i].v = hp_win[i];
        hp_win_pair[i].rank = hp_rank;
    }
    PMPI_Reduce(hp_win_pair, hp_win_min, (int)common, MPI_DOUBLE_INT, MPI_MINLOC, 0, hp_comm);
    PMPI_Reduce(hp_win, hp_win_max, (int)common, MPI_DOUBLE, MPI_MAX, 0, hp_comm);
    if (hp_rank == 0) {
        for (long i = 0; i < common; i++) {
            hp_out_min[i] = hp_win_min[i].v;
            hp_out_rank[i] = hp_win_min[i].rank;
        }
        hpcotel_mpi_window_reduced(hp_out_min, hp_out_rank, hp_win_max, (size_t)common);
    }
}

static void hp_after_init(uint64_t t0) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING + 1];
    int len = 0, flags;
    unsigned char ctx[HPCOTEL_CTX_LEN];
    char host[HPCOTEL_HOST_LEN];
    char *hosts = NULL;

    PMPI_Comm_rank(MPI_COMM_WORLD, &hp_rank);
    PMPI_Comm_size(MPI_COMM_WORLD, &hp_size);
    memset(version, 0, sizeof version);
    if (PMPI_Get_library_version(version, &len) != MPI_SUCCESS) version[0] = '\0';
    flags = hpcotel_mpi_init_begin(hp_rank, hp_size, t0, version);
    hp_phase_names = (flags & HPCOTEL_INIT_PHASE_NAMES) != 0;
    memset(ctx, 0, sizeof ctx);
    if (!(flags & HPCOTEL_INIT_COLLECTIVES)) {
        /* No library collectives: every rank derives the same context on its own. */
        hpcotel_mpi_context(ctx);
        if (!ctx[HPCOTEL_CTX_ENABLED]) return;
        hpcotel_mpi_init_end(ctx, NULL);
        hp_on = 1;
        return;
    }
    if (PMPI_Comm_dup(MPI_COMM_WORLD, &hp_comm) != MPI_SUCCESS) {
        hp_comm = MPI_COMM_NULL;
        return;
    }
    if (hp_rank == 0) {
        hpcotel_mpi_context(ctx);
        /* Rank 0 needs the host table; without memory nobody records. */
        hosts = calloc((size_t)hp_size, HPCOTEL_HOST_LEN);
        if (hosts == NULL) ctx[HPCOTEL_CTX_ENABLED] = 0;
    }
    PMPI_Bcast(ctx, HPCOTEL_CTX_LEN, MPI_BYTE, 0, hp_comm);
    if (!ctx[HPCOTEL_CTX_ENABLED]) {
        /* Rank 0 said no: nobody records, nobody reduces. */
        free(hosts);
        PMPI_Comm_free(&hp_comm);
        return;
    }
    hpcotel_mpi_hostname(host);
    PMPI_Gather(host, HPCOTEL_HOST_LEN, MPI_CHAR, hosts, HPCOTEL_HOST_LEN, MPI_CHAR, 0, hp_comm);
    hpcotel_mpi_init_end(ctx, hosts);
    free(hosts);
    hp_collectives = 1;
    hp_on = 1;
}

int MPI_Init(int *argc, char ***argv) {
    uint64_t t0 = hp_now();
    int rc = PMPI_Init(argc, argv);
    if (rc == MPI_SUCCESS) hp_after_init(t0);
    return rc;
}

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) {
    uint64_t t0 = hp_now();
    int rc = PMPI_Init_thread(argc, argv, required, provided);
    if (rc == MPI_SUCCESS) hp_after_init(t0);
    return rc;
}

int MPI_Finalize(void) {
    if (hp_on) {
        if (hp_collectives) hp_reduce_window();
        hpcotel_mpi_finalize(hp_now());
        hp_on = 0;
        if (hp_collectives) PMPI_Comm_free(&hp_comm);
        hp_collectives = 0;
    }
    return PMPI_Finalize();
}

int MPI_Abort(MPI_Comm comm, int errorcode) {
    if (hp_on) {
        hp_on = 0;
        hpcotel_mpi_abort(errorcode, hp_now());
    }
    return PMPI_Abort(comm, errorcode);
}

/* Copies the NUL-terminated string at `p` into `out` when every byte up to its NUL is
 * readable and printable, without ever faulting: process_vm_readv on our own memory reports
 * an unmapped address as an error instead of a SIGSEGV. Returns 1 when `out` holds a name. */
static int hp_copy_name(const char *p, char *out, size_t cap) {
    long page = sysconf(_SC_PAGESIZE);
    size_t got = 0;
    if (p == NULL || page <= 0) return 0;
    while (got < cap - 1) {
        uintptr_t addr = (uintptr_t)p + got;
        size_t chunk = (size_t)page - (size_t)(addr % (uintptr_t)page);
        struct iovec local, remote;
        char *nul;
        if (chunk > cap - 1 - got) chunk = cap - 1 - got;
        local.iov_base = out + got;
        local.iov_len = chunk;
        remote.iov_base = (void *)addr;
        remote.iov_len = chunk;
        if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)chunk) return 0;
        nul = memchr(out + got, '\0', chunk);
        if (nul != NULL) {
            for (const unsigned char *c = (const unsigned char *)out; c < (unsigned char *)nul; c++)
                if (*c < 0x20 || *c == 0x7f) return 0;
            return nul != out;
        }
        got += chunk;
    }
    return 0; /* longer than a phase name may be */
}

/* MPI_Pcontrol(1, "name") opens a phase, MPI_Pcontrol(-1, "name") closes it (the IPM
 * convention). The standard lets callers pass the level alone (MPI_Pcontrol(1) = "profiling
 * on"), and C cannot tell whether a variadic argument was passed, so the name is read only
 * through hp_copy_name: whatever the argument register holds, a bad pointer is ignored. */
int MPI_Pcontrol(const int level, ...) {
    if (hp_on && hp_phase_names && (level == 1 || level == -1)) {
        va_list ap;
        const char *name;
        char copy[HPCOTEL_PHASE_LEN];
        va_start(ap, level);
        name = va_arg(ap, const char *);
        va_end(ap);
        if (hp_copy_name(name, copy, sizeof copy)) hpcotel_mpi_phase(level, copy, hp_now());
    }
    return PMPI_Pcontrol(level);
}

/* Process exit without MPI_Finalize: end the spans as failed and flush (bounded). */
__attribute__((destructor)) static void hp_at_exit(void) {
    if (hp_on) {
        hp_on = 0;
        hpcotel_mpi_exit(hp_now());
    }
}

/* ---- collectives ---- */

/* A collective: time it and record it. SYNC: it synchronises all ranks (nobody leaves before
 * the last arrives), so on MPI_COMM_WORLD its duration joins the straggler window, reduced
 * every HPCOTEL_WINDOW such calls. Rooted collectives (Bcast, Reduce, Gather, Scatter) do
 * not synchronise: their root may return at once. */
#define HP_COLLECTIVE_(OP, COMM, BYTES, ROOT, SYNC, CALL)                                   \
    do {                                                                                    \
        uint64_t t0_, t1_;                                                                  \
        int rc_, window_;                                                                   \
        if (!hp_on) return CALL;                                                            \
        t0_ = hp_now();                                                                     \
        rc_ = CALL;                                                                         \
        t1_ = hp_now();                                                                     \
        window_ = (SYNC) && (COMM) == MPI_COMM_WORLD;                                       \
        hpcotel_mpi_record(OP, hp_comm_size(COMM), (BYTES), (ROOT), t0_, t1_, window_);     \
        if (window_ && hp_collectives && ++hp_world_calls >= HPCOTEL_WINDOW) {              \
            hp_world_calls = 0;                                                             \
            hp_reduce_window();                                                             \
        }                                                                                   \
        return rc_;                                                                         \
    } while (0)
#define HP_COLLECTIVE(OP, COMM, BYTES, ROOT, CALL) HP_COLLECTIVE_(OP, COMM, BYTES, ROOT, 1, CALL)
#define HP_ROOTED(OP, COMM, BYTES, ROOT, CALL) HP_COLLECTIVE_(OP, COMM, BYTES, ROOT, 0, CALL)

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype,
                  MPI_Op op, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_ALLREDUCE, comm, hp_bytes(count, datatype), -1,
                  PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm));
}

int MPI_Reduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype, MPI_Op op,
               int root, MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_REDUCE, comm, hp_bytes(count, datatype), root,
                  PMPI_Reduce(sendbuf, recvbuf, count, datatype, op, root, comm));
}

int MPI_Bcast(void *buffer, int count, MPI_Datatype datatype, int root, MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_BCAST, comm, hp_bytes(count, datatype), root,
                  PMPI_Bcast(buffer, count, datatype, root, comm));
}

int MPI_Barrier(MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_BARRIER, comm, -1, -1, PMPI_Barrier(comm));
}

int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                  int recvcount, MPI_Datatype recvtype, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_ALLGATHER, comm,
                  sendbuf == MPI_IN_PLACE ? hp_bytes(recvcount, recvtype)
                                          : hp_bytes(sendcount, sendtype),
                  -1,
                  PMPI_Allgather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype,
                                 comm));
}

int MPI_Allgatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                   const int recvcounts[], const int displs[], MPI_Datatype recvtype,
                   MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_ALLGATHERV, comm,
                  sendbuf == MPI_IN_PLACE ? hp_bytes_own(recvcounts, comm, recvtype)
                                          : hp_bytes(sendcount, sendtype),
                  -1,
                  PMPI_Allgatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs,
                                  recvtype, comm));
}

int MPI_Alltoall(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                 int recvcount, MPI_Datatype recvtype, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_ALLTOALL, comm,
                  (sendbuf == MPI_IN_PLACE ? hp_bytes(recvcount, recvtype)
                                           : hp_bytes(sendcount, sendtype)) *
                      (int64_t)hp_peer_count(comm),
                  -1,
                  PMPI_Alltoall(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype,
                                comm));
}

int MPI_Alltoallv(const void *sendbuf, const int sendcounts[], const int sdispls[],
                  MPI_Datatype sendtype, void *recvbuf, const int recvcounts[],
                  const int rdispls[], MPI_Datatype recvtype, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_ALLTOALLV, comm,
                  sendbuf == MPI_IN_PLACE ? hp_bytes_v(recvcounts, comm, recvtype)
                                          : hp_bytes_v(sendcounts, comm, sendtype),
                  -1,
                  PMPI_Alltoallv(sendbuf, sendcounts, sdispls, sendtype, recvbuf, recvcounts,
                                 rdispls, recvtype, comm));
}

int MPI_Reduce_scatter(const void *sendbuf, void *recvbuf, const int recvcounts[],
                       MPI_Datatype datatype, MPI_Op op, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_REDUCE_SCATTER, comm, hp_bytes_v(recvcounts, comm, datatype), -1,
                  PMPI_Reduce_scatter(sendbuf, recvbuf, recvcounts, datatype, op, comm));
}

int MPI_Reduce_scatter_block(const void *sendbuf, void *recvbuf, int recvcount,
                             MPI_Datatype datatype, MPI_Op op, MPI_Comm comm) {
    HP_COLLECTIVE(HPCOTEL_OP_REDUCE_SCATTER_BLOCK, comm,
                  hp_bytes(recvcount, datatype) * (int64_t)hp_comm_size(comm), -1,
                  PMPI_Reduce_scatter_block(sendbuf, recvbuf, recvcount, datatype, op, comm));
}

int MPI_Gather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
               int recvcount, MPI_Datatype recvtype, int root, MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_GATHER, comm,
                  sendbuf == MPI_IN_PLACE ? hp_bytes(recvcount, recvtype)
                                          : hp_bytes(sendcount, sendtype),
                  root,
                  PMPI_Gather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, root,
                              comm));
}

int MPI_Gatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                const int recvcounts[], const int displs[], MPI_Datatype recvtype, int root,
                MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_GATHERV, comm,
                  sendbuf == MPI_IN_PLACE ? hp_bytes_own(recvcounts, comm, recvtype)
                                          : hp_bytes(sendcount, sendtype),
                  root,
                  PMPI_Gatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs,
                               recvtype, root, comm));
}

int MPI_Scatter(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                int recvcount, MPI_Datatype recvtype, int root, MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_SCATTER, comm,
                  recvbuf == MPI_IN_PLACE ? hp_bytes(sendcount, sendtype)
                                          : hp_bytes(recvcount, recvtype),
                  root,
                  PMPI_Scatter(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, root,
                               comm));
}

int MPI_Scatterv(const void *sendbuf, const int sendcounts[], const int displs[],
                 MPI_Datatype sendtype, void *recvbuf, int recvcount, MPI_Datatype recvtype,
                 int root, MPI_Comm comm) {
    HP_ROOTED(HPCOTEL_OP_SCATTERV, comm,
                  recvbuf == MPI_IN_PLACE ? hp_bytes_own(sendcounts, comm, sendtype)
                                          : hp_bytes(recvcount, recvtype),
                  root,
                  PMPI_Scatterv(sendbuf, sendcounts, displs, sendtype, recvbuf, recvcount,
                                recvtype, root, comm));
}

/* ---- point-to-point ---- */

#define HP_CALL(OP, COMM_SIZE, BYTES, PEER, CALL)                                           \
    do {                                                                                    \
        uint64_t t0_, t1_;                                                                  \
        int rc_;                                                                            \
        if (!hp_on) return CALL;                                                            \
        t0_ = hp_now();                                                                     \
        rc_ = CALL;                                                                         \
        t1_ = hp_now();                                                                     \
        hpcotel_mpi_record(OP, (COMM_SIZE), (BYTES), (PEER), t0_, t1_, 0);                  \
        return rc_;                                                                         \
    } while (0)

int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag,
             MPI_Comm comm) {
    HP_CALL(HPCOTEL_OP_SEND, hp_comm_size(comm), hp_bytes(count, datatype), dest,
            PMPI_Send(buf, count, datatype, dest, tag, comm));
}

int MPI_Ssend(const void *buf, int count, MPI_Datatype datatype, int dest, int tag,
              MPI_Comm comm) {
    HP_CALL(HPCOTEL_OP_SSEND, hp_comm_size(comm), hp_bytes(count, datatype), dest,
            PMPI_Ssend(buf, count, datatype, dest, tag, comm));
}

int MPI_Recv(void *buf, int count, MPI_Datatype datatype, int source, int tag, MPI_Comm comm,
             MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_RECV, hp_comm_size(comm), hp_bytes(count, datatype), source,
            PMPI_Recv(buf, count, datatype, source, tag, comm, status));
}

int MPI_Sendrecv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, int dest,
                 int sendtag, void *recvbuf, int recvcount, MPI_Datatype recvtype, int source,
                 int recvtag, MPI_Comm comm, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_SENDRECV, hp_comm_size(comm), hp_bytes(sendcount, sendtype), dest,
            PMPI_Sendrecv(sendbuf, sendcount, sendtype, dest, sendtag, recvbuf, recvcount,
                          recvtype, source, recvtag, comm, status));
}

int MPI_Isend(const void *buf, int count, MPI_Datatype datatype, int dest, int tag,
              MPI_Comm comm, MPI_Request *request) {
    HP_CALL(HPCOTEL_OP_ISEND, hp_comm_size(comm), hp_bytes(count, datatype), dest,
            PMPI_Isend(buf, count, datatype, dest, tag, comm, request));
}

int MPI_Irecv(void *buf, int count, MPI_Datatype datatype, int source, int tag, MPI_Comm comm,
              MPI_Request *request) {
    HP_CALL(HPCOTEL_OP_IRECV, hp_comm_size(comm), hp_bytes(count, datatype), source,
            PMPI_Irecv(buf, count, datatype, source, tag, comm, request));
}

int MPI_Wait(MPI_Request *request, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_WAIT, 0, -1, -1, PMPI_Wait(request, status));
}

int MPI_Waitall(int count, MPI_Request requests[], MPI_Status statuses[]) {
    HP_CALL(HPCOTEL_OP_WAITALL, 0, -1, -1, PMPI_Waitall(count, requests, statuses));
}

int MPI_Waitany(int count, MPI_Request requests[], int *index, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_WAITANY, 0, -1, -1, PMPI_Waitany(count, requests, index, status));
}

int MPI_Waitsome(int incount, MPI_Request requests[], int *outcount, int indices[],
                 MPI_Status statuses[]) {
    HP_CALL(HPCOTEL_OP_WAITSOME, 0, -1, -1,
            PMPI_Waitsome(incount, requests, outcount, indices, statuses));
}

int MPI_Test(MPI_Request *request, int *flag, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_TEST, 0, -1, -1, PMPI_Test(request, flag, status));
}

int MPI_Testall(int count, MPI_Request requests[], int *flag, MPI_Status statuses[]) {
    HP_CALL(HPCOTEL_OP_TESTALL, 0, -1, -1, PMPI_Testall(count, requests, flag, statuses));
}

int MPI_Testany(int count, MPI_Request requests[], int *index, int *flag, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_TESTANY, 0, -1, -1, PMPI_Testany(count, requests, index, flag, status));
}

/* ---- MPI-IO ---- */

static int hp_file_size(MPI_File fh) {
    MPI_Group g;
    int n = 0;
    if (PMPI_File_get_group(fh, &g) != MPI_SUCCESS) return 0;
    PMPI_Group_size(g, &n);
    PMPI_Group_free(&g);
    return n;
}

int MPI_File_open(MPI_Comm comm, const char *filename, int amode, MPI_Info info,
                  MPI_File *fh) {
    HP_CALL(HPCOTEL_OP_FILE_OPEN, hp_comm_size(comm), -1, -1,
            PMPI_File_open(comm, filename, amode, info, fh));
}

int MPI_File_close(MPI_File *fh) {
    HP_CALL(HPCOTEL_OP_FILE_CLOSE, 0, -1, -1, PMPI_File_close(fh));
}

int MPI_File_read(MPI_File fh, void *buf, int count, MPI_Datatype datatype,
                  MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_READ, 0, hp_bytes(count, datatype), -1,
            PMPI_File_read(fh, buf, count, datatype, status));
}

int MPI_File_write(MPI_File fh, const void *buf, int count, MPI_Datatype datatype,
                   MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_WRITE, 0, hp_bytes(count, datatype), -1,
            PMPI_File_write(fh, buf, count, datatype, status));
}

int MPI_File_read_at(MPI_File fh, MPI_Offset offset, void *buf, int count,
                     MPI_Datatype datatype, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_READ_AT, 0, hp_bytes(count, datatype), -1,
            PMPI_File_read_at(fh, offset, buf, count, datatype, status));
}

int MPI_File_write_at(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                      MPI_Datatype datatype, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_WRITE_AT, 0, hp_bytes(count, datatype), -1,
            PMPI_File_write_at(fh, offset, buf, count, datatype, status));
}

int MPI_File_read_all(MPI_File fh, void *buf, int count, MPI_Datatype datatype,
                      MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_READ_ALL, hp_file_size(fh), hp_bytes(count, datatype),
            -1, PMPI_File_read_all(fh, buf, count, datatype, status));
}

int MPI_File_write_all(MPI_File fh, const void *buf, int count, MPI_Datatype datatype,
                       MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_WRITE_ALL, hp_file_size(fh),
            hp_bytes(count, datatype), -1,
            PMPI_File_write_all(fh, buf, count, datatype, status));
}

int MPI_File_read_at_all(MPI_File fh, MPI_Offset offset, void *buf, int count,
                         MPI_Datatype datatype, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_READ_AT_ALL, hp_file_size(fh),
            hp_bytes(count, datatype), -1,
            PMPI_File_read_at_all(fh, offset, buf, count, datatype, status));
}

int MPI_File_write_at_all(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                          MPI_Datatype datatype, MPI_Status *status) {
    HP_CALL(HPCOTEL_OP_FILE_WRITE_AT_ALL, hp_file_size(fh),
            hp_bytes(count, datatype), -1,
            PMPI_File_write_at_all(fh, offset, buf, count, datatype, status));
}
