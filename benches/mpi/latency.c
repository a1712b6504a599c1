/*
 * MPI latency microbenchmarks for measuring what libhpcotel_mpi.so adds per intercepted call.
 * Run the same binary with and without LD_PRELOAD=libhpcotel_mpi.so (benches/mpi/run.sh does).
 *
 *   latency pingpong  [-n ITERS] [-w WARMUP]   8-byte MPI_Send/MPI_Recv ping-pong between
 *                                              ranks 2k and 2k+1 (0<->1, 2<->3, ...), all pairs
 *                                              at once; an odd last rank only joins the
 *                                              barriers. Sample = round trip / 2 (one-way
 *                                              latency), taken on the even rank of each pair.
 *   latency allreduce [-n ITERS] [-w WARMUP]   8-byte (one double) MPI_SUM MPI_Allreduce on
 *                                              MPI_COMM_WORLD, back to back. Sample = one call,
 *                                              taken on every rank.
 *   latency self      [-n ITERS] [-w WARMUP]   8-byte MPI_Sendrecv with this rank as both
 *                                              destination and source (a plain Send to self
 *                                              then Recv hangs in MPICH 4.0). Sample = one
 *                                              call. Nothing waits on another process: the
 *                                              point-to-point wrapper's whole cost (the same
 *                                              code as MPI_Send's and MPI_Recv's) is on the
 *                                              timed path, with no scheduler in between.
 *   latency clock     [-n ITERS] [-w WARMUP]   two clock_gettime(CLOCK_MONOTONIC) back to back,
 *                                              no MPI call: the timer's cost and granularity.
 *
 * Every sample is taken with clock_gettime(CLOCK_MONOTONIC) around the call (or round trip).
 * After the timed loop the samples of the measuring ranks are gathered to rank 0, which prints
 * one JSON line on stdout:
 *
 *   {"bench":"pingpong","ranks":4,"iters":100000,"samples":200000,"calls_per_sample":2,
 *    "median_ns":..,"p99_ns":..,"mean_ns":..,"min_ns":..}
 *
 * statistics over the pooled samples of all measuring ranks. `calls_per_sample` is how many
 * intercepted calls one sample spans: 2 for ping-pong (a one-way trip is the sender's MPI_Send
 * and the receiver's MPI_Recv; a round trip is 4 calls, Send + Recv on each rank), 1 for
 * allreduce, 1 for self, 0 for clock.
 */
#define _POSIX_C_SOURCE 199309L
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *v, long n, double p) {
    long k = (long)(p / 100.0 * (double)n + 0.999999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static void usage(void) {
    fprintf(stderr, "usage: latency pingpong|allreduce|self|clock [-n ITERS] [-w WARMUP]\n");
}

int main(int argc, char **argv) {
    int rank, size;
    long iters = 100000, warmup = 10000;
    const char *mode;
    double *samples;
    long nsamples = 0;
    int measuring, calls_per_sample;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 2) {
        if (rank == 0) usage();
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    mode = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            iters = atol(argv[++i]);
        } else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
            warmup = atol(argv[++i]);
        } else {
            if (rank == 0) usage();
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    if (iters < 1 || warmup < 0) {
        if (rank == 0) usage();
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    samples = malloc(sizeof(double) * (size_t)iters);
    if (samples == NULL) {
        fprintf(stderr, "latency: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    if (strcmp(mode, "pingpong") == 0) {
        char buf[8];
        int peer = rank ^ 1;
        int active = peer < size;
        int pinger = active && (rank % 2 == 0);
        memset(buf, 0, sizeof buf);
        measuring = pinger;
        calls_per_sample = 2;
        MPI_Barrier(MPI_COMM_WORLD);
        for (long i = 0; active && i < warmup + iters; i++) {
            if (pinger) {
                uint64_t t0 = now_ns();
                MPI_Send(buf, 8, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
                MPI_Recv(buf, 8, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                uint64_t t1 = now_ns();
                if (i >= warmup) samples[nsamples++] = (double)(t1 - t0) / 2.0;
            } else {
                MPI_Recv(buf, 8, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, 8, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
            }
        }
    } else if (strcmp(mode, "allreduce") == 0) {
        double in = (double)rank, out = 0.0;
        measuring = 1;
        calls_per_sample = 1;
        MPI_Barrier(MPI_COMM_WORLD);
        for (long i = 0; i < warmup + iters; i++) {
            uint64_t t0 = now_ns();
            MPI_Allreduce(&in, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            uint64_t t1 = now_ns();
            if (i >= warmup) samples[nsamples++] = (double)(t1 - t0);
        }
    } else if (strcmp(mode, "self") == 0) {
        char sbuf[8], rbuf[8];
        memset(sbuf, 0, sizeof sbuf);
        measuring = 1;
        calls_per_sample = 1;
        MPI_Barrier(MPI_COMM_WORLD);
        for (long i = 0; i < warmup + iters; i++) {
            uint64_t t0 = now_ns();
            MPI_Sendrecv(sbuf, 8, MPI_BYTE, rank, 1, rbuf, 8, MPI_BYTE, rank, 1, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            uint64_t t1 = now_ns();
            if (i >= warmup) samples[nsamples++] = (double)(t1 - t0);
        }
    } else if (strcmp(mode, "clock") == 0) {
        /* No MPI call: the cost and granularity of one clock read, which each wrapper does
         * twice and this program once per sample. */
        measuring = 1;
        calls_per_sample = 0;
        for (long i = 0; i < warmup + iters; i++) {
            uint64_t t0 = now_ns();
            uint64_t t1 = now_ns();
            if (i >= warmup) samples[nsamples++] = (double)(t1 - t0);
        }
    } else {
        if (rank == 0) usage();
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    MPI_Barrier(MPI_COMM_WORLD);

    /* Pool the measuring ranks' samples on rank 0. */
    {
        int *counts = NULL, *displs = NULL;
        int mine = measuring ? (int)nsamples : 0;
        long total = 0;
        double *all = NULL;
        if (rank == 0) {
            counts = malloc(sizeof(int) * (size_t)size);
            displs = malloc(sizeof(int) * (size_t)size);
        }
        MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            for (int r = 0; r < size; r++) {
                displs[r] = (int)total;
                total += counts[r];
            }
            all = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
            if (counts == NULL || displs == NULL || all == NULL) {
                fprintf(stderr, "latency: out of memory\n");
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        }
        MPI_Gatherv(samples, mine, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0,
                    MPI_COMM_WORLD);
        if (rank == 0) {
            double sum = 0.0;
            qsort(all, (size_t)total, sizeof(double), cmp_double);
            for (long i = 0; i < total; i++) sum += all[i];
            printf("{\"bench\":\"%s\",\"ranks\":%d,\"iters\":%ld,\"samples\":%ld,"
                   "\"calls_per_sample\":%d,\"median_ns\":%.1f,\"p99_ns\":%.1f,"
                   "\"mean_ns\":%.1f,\"min_ns\":%.1f}\n",
                   mode, size, iters, total, calls_per_sample, percentile(all, total, 50.0),
                   percentile(all, total, 99.0), total > 0 ? sum / (double)total : 0.0,
                   total > 0 ? all[0] : 0.0);
            fflush(stdout);
            free(all);
            free(counts);
            free(displs);
        }
    }
    free(samples);
    MPI_Finalize();
    return 0;
}
