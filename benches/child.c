/*
 * benchchild: the main child that every init supervises in the benchmark,
 * and the tight timing loop for signal latency (C, so that the harness's own
 * overhead stays far below the latencies it measures).
 *
 *   benchchild serve FIFO        answer each SIGHUP with one byte 'h' on FIFO;
 *                                write 'r' once the handler is installed, then
 *                                sleep in pause() (SIGTERM keeps its default
 *                                action, so the child obeys `docker stop`).
 *   benchchild storm FIFO N      write 'r', wait for SIGHUP, then make N
 *                                orphans (children of an intermediate that
 *                                exits, so they are reparented to PID 1), let
 *                                them all exit at once and write 'g' plus the
 *                                CLOCK_MONOTONIC time of that release (8 bytes,
 *                                native endian); then sleep.
 *   benchchild ping N PID FD [PID FD...]
 *                                N rounds; in each, for every target in turn:
 *                                note the time, kill(PID, SIGHUP), wait for one
 *                                byte on the inherited fd FD. Prints "INDEX NS"
 *                                per signal (INDEX = the target's position), or
 *                                "INDEX lost" when no answer came within 2 s.
 *   benchchild rusage OUT PROG [ARGS...]
 *                                run PROG, then write "WALL_NS MAXRSS_KIB STATUS"
 *                                to the file OUT. Peak RSS must be measured from
 *                                a small parent: at exec the kernel carries the
 *                                old memory's high-water mark into ru_maxrss,
 *                                and a child forked (or vforked) by Python
 *                                would start from Python's 30 MiB.
 *
 * Build: gcc -O2 -Wall -Wextra -o benchchild benches/child.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int answer_fd = -1;
static volatile sig_atomic_t go;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "benchchild: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        p += n;
        len -= (size_t)n;
    }
}

static void on_hup_answer(int signo)
{
    (void)signo;
    int saved = errno;
    char c = 'h';
    /* Async-signal-safe; a full pipe would only drop an answer. */
    (void)!write(answer_fd, &c, 1);
    errno = saved;
}

static void on_hup_go(int signo)
{
    (void)signo;
    go = 1;
}

static void install(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGHUP, &sa, NULL) != 0)
        die("sigaction");
}

static int open_fifo(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        die("open fifo");
    return fd;
}

static _Noreturn void serve(const char *fifo)
{
    answer_fd = open_fifo(fifo);
    install(on_hup_answer);
    write_all(answer_fd, "r", 1);
    for (;;)
        pause();
}

/* Runs in the intermediate: forks n orphans that exit once `release` has no
 * writer left, then exits itself so they are reparented to PID 1. */
static _Noreturn void make_orphans(long n, int release_r, int release_w)
{
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "benchchild: fork failed after %ld orphans: %s\n", i,
                    strerror(errno));
            break;
        }
        if (pid == 0) {
            char c;
            close(release_w);
            while (read(release_r, &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
    }
    _exit(0);
}

static _Noreturn void storm(const char *fifo, long n)
{
    sigset_t hup, old;
    int fd = open_fifo(fifo);
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_BLOCK, &hup, &old);
    install(on_hup_go);
    write_all(fd, "r", 1);
    while (!go)
        sigsuspend(&old);

    int release[2];
    if (pipe(release) != 0)
        die("pipe");
    pid_t middle = fork();
    if (middle < 0)
        die("fork");
    if (middle == 0)
        make_orphans(n, release[0], release[1]);
    close(release[0]);
    int status;
    while (waitpid(middle, &status, 0) < 0 && errno == EINTR)
        ;
    /* Every orphan is now PID 1's child, blocked on the pipe (or about to
     * be): closing the last writer lets them all exit together. */
    uint64_t released = now_ns();
    close(release[1]);
    char msg[1 + sizeof released];
    msg[0] = 'g';
    memcpy(msg + 1, &released, sizeof released);
    write_all(fd, msg, sizeof msg);
    for (;;)
        pause();
}

/* Round-robin over the targets, so that whatever else the machine does
 * while the loop runs hits every init alike. */
static int ping(long n, int targets, pid_t *pids, int *fds)
{
    uint64_t *lat = calloc((size_t)(n * targets), sizeof *lat);
    if (lat == NULL)
        die("calloc");
    for (int t = 0; t < targets; t++) {
        /* Blocking reads with a poll timeout: a dropped signal must not hang. */
        int flags = fcntl(fds[t], F_GETFL);
        fcntl(fds[t], F_SETFL, flags & ~O_NONBLOCK);
    }
    for (long i = 0; i < n; i++) {
        for (int t = 0; t < targets; t++) {
            struct pollfd pfd = {.fd = fds[t], .events = POLLIN};
            char c;
            uint64_t t0 = now_ns();
            if (kill(pids[t], SIGHUP) != 0)
                die("kill");
            if (poll(&pfd, 1, 2000) <= 0)
                continue; /* lost: stays 0 */
            if (read(fds[t], &c, 1) != 1)
                die("read");
            lat[i * targets + t] = now_ns() - t0;
        }
    }
    /* Printed at the end so stdio stays out of the timed loop. */
    for (long i = 0; i < n; i++) {
        for (int t = 0; t < targets; t++) {
            uint64_t v = lat[i * targets + t];
            if (v == 0)
                printf("%d lost\n", t);
            else
                printf("%d %llu\n", t, (unsigned long long)v);
        }
    }
    return 0;
}

static int rusage_of(const char *out, char **argv)
{
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "benchchild: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR)
            die("wait4");
    uint64_t wall = now_ns() - t0;
    FILE *f = fopen(out, "w");
    if (f == NULL)
        die("open result file");
    fprintf(f, "%llu %ld %d\n", (unsigned long long)wall, ru.ru_maxrss,
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        serve(argv[2]);
    if (argc == 4 && strcmp(argv[1], "storm") == 0)
        storm(argv[2], atol(argv[3]));
    if (argc >= 5 && argc % 2 == 1 && strcmp(argv[1], "ping") == 0) {
        int targets = (argc - 3) / 2;
        pid_t pids[64];
        int fds[64];
        if (targets > 64)
            targets = 64;
        for (int t = 0; t < targets; t++) {
            pids[t] = (pid_t)atol(argv[3 + 2 * t]);
            fds[t] = atoi(argv[4 + 2 * t]);
            /* Defence in depth: never signal the machine's init or a group. */
            if (pids[t] <= 1) {
                fprintf(stderr, "benchchild: refusing to signal pid %d\n", (int)pids[t]);
                return 2;
            }
        }
        return ping(atol(argv[2]), targets, pids, fds);
    }
    if (argc >= 4 && strcmp(argv[1], "rusage") == 0)
        return rusage_of(argv[2], argv + 3);
    fprintf(stderr, "usage: benchchild serve FIFO | storm FIFO N | ping N PID FD [PID FD...]"
                    " | rusage OUT PROG [ARGS...]\n");
    return 2;
}
