/*
 * A real MPI program for hpcotel's tests and docs: collectives, point-to-point, MPI_Pcontrol
 * phases and an optional straggler, with every call counted so a test can compare the
 * library's histograms with what the program did.
 *
 *   job [--iterations N] [--straggler RANK] [--straggle-ms MS] [--exit-code C]
 *       [--no-finalize] [--abort-rank R] [--fork] [--bare-pcontrol] [--intercomm]
 *
 * --straggler R: rank R sleeps MS ms (default 50) before every 10th Allreduce.
 * --bare-pcontrol: also calls MPI_Pcontrol(0), (1) and (-1) without a name, as the MPI
 * standard allows.
 * --intercomm: also an Alltoallv on an intercommunicator (the last rank | the others).
 * Prints one line per rank: "rank R of S: allreduce=A bcast=B barrier=C allgather=G
 * alltoallv=V send=D recv=E phases=P result=OK".
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char **argv) {
    int iterations = 40, straggler = -1, straggle_ms = 50, exit_code = 0, finalize = 1;
    int abort_rank = -1, do_fork = 0, bare_pcontrol = 0, intercomm = 0, alltoallv = 0;
    int rank, size, allreduce = 0, bcast = 0, barrier = 0, allgather = 0, sends = 0, recvs = 0, phases = 0;
    int ok = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--straggler") && i + 1 < argc) straggler = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--straggle-ms") && i + 1 < argc) straggle_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exit-code") && i + 1 < argc) exit_code = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--abort-rank") && i + 1 < argc) abort_rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-finalize")) finalize = 0;
        else if (!strcmp(argv[i], "--fork")) do_fork = 1;
        else if (!strcmp(argv[i], "--bare-pcontrol")) bare_pcontrol = 1;
        else if (!strcmp(argv[i], "--intercomm")) intercomm = 1;
        else { fprintf(stderr, "job: unknown argument %s\n", argv[i]); return 2; }
    }

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    /* Phase "setup": rank 0 broadcasts the parameters. */
    MPI_Pcontrol(1, "setup");
    phases++;
    int params[2] = {iterations, straggler};
    MPI_Bcast(params, 2, MPI_INT, 0, MPI_COMM_WORLD);
    bcast++;
    MPI_Pcontrol(-1, "setup");
    if (bare_pcontrol) {
        /* The standard's own use: levels only, no name argument. */
        MPI_Pcontrol(0);
        MPI_Pcontrol(1);
        MPI_Pcontrol(-1);
    }

    if (do_fork && rank == 1) {
        /* A child that exits through exit(): its copy of the library must record nothing. */
        pid_t pid = fork();
        if (pid == 0) exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
    }

    /* Phases "epoch 0", "epoch 1": Allreduce of one double, a ring exchange each step. */
    int half = iterations / 2;
    for (int epoch = 0; epoch < 2; epoch++) {
        char name[32];
        snprintf(name, sizeof name, "epoch %d", epoch);
        MPI_Pcontrol(1, name);
        phases++;
        int first = epoch * half, last = epoch == 0 ? half : iterations;
        for (int i = first; i < last; i++) {
            if (rank == params[1] && i % 10 == 9) sleep_ms(straggle_ms);
            double mine = rank + 1, sum = 0;
            MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            allreduce++;
            if (sum != size * (size + 1) / 2.0) ok = 0;
            int token = rank, got = -1;
            int right = (rank + 1) % size, left = (rank + size - 1) % size;
            if (size > 1) {
                if (rank % 2 == 0) {
                    MPI_Send(&token, 1, MPI_INT, right, 7, MPI_COMM_WORLD);
                    MPI_Recv(&got, 1, MPI_INT, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(&got, 1, MPI_INT, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(&token, 1, MPI_INT, right, 7, MPI_COMM_WORLD);
                }
                sends++;
                recvs++;
                if (got != left) ok = 0;
            }
        }
        MPI_Pcontrol(-1, name);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    barrier++;

    /* In place: MPI ignores the send arguments, so the wrapper must not read them. */
    int *ranks = calloc((size_t)size, sizeof(int));
    ranks[rank] = rank;
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, ranks, 1, MPI_INT, MPI_COMM_WORLD);
    allgather++;
    for (int i = 0; i < size; i++)
        if (ranks[i] != i) ok = 0;
    free(ranks);

    if (intercomm && size >= 2 && size <= 64) {
        /* An intercommunicator of the last rank and the others (sizes size-1 | 1): Alltoallv's
         * counts have one entry per rank of the REMOTE group. The entries past them hold a
         * huge count a wrapper reading the local group's size would add to the bytes. */
        int color = rank == size - 1, rsize = 0;
        int counts[64], displs[64], out[64], in[64];
        MPI_Comm local, inter;
        MPI_Comm_split(MPI_COMM_WORLD, color, rank, &local);
        MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, color ? 0 : size - 1, 99, &inter);
        MPI_Comm_remote_size(inter, &rsize);
        for (int i = 0; i < 64; i++) {
            counts[i] = i < rsize ? 1 : 1000000;
            displs[i] = i;
            out[i] = rank;
            in[i] = -1;
        }
        MPI_Alltoallv(out, counts, displs, MPI_INT, in, counts, displs, MPI_INT, inter);
        alltoallv++;
        for (int i = 0; i < rsize; i++)
            if (in[i] != (color ? i : size - 1)) ok = 0;
        MPI_Comm_free(&inter);
        MPI_Comm_free(&local);
    }

    printf("rank %d of %d: allreduce=%d bcast=%d barrier=%d allgather=%d alltoallv=%d send=%d "
           "recv=%d phases=%d result=%s\n",
           rank, size, allreduce, bcast, barrier, allgather, alltoallv, sends, recvs, phases,
           ok ? "OK" : "WRONG");
    fflush(stdout);
    if (rank == abort_rank) MPI_Abort(MPI_COMM_WORLD, 42);
    if (finalize) MPI_Finalize();
    return ok ? exit_code : 1;
}
