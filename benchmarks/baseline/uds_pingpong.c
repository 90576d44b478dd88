/* Raw Unix-socket ping-pong: the baseline of `clove-gym bench runtime`, and its thin C client.
 *
 *   uds_pingpong serve  PATH CPU
 *       An epoll echo server: every byte a client sends comes straight back. It stands where the kernel
 *       stands, with no framing, parsing or dispatch: the floor any kernel round trip is compared to.
 *   uds_pingpong client PATH CPU CONNS ROUNDS SECONDS SIZE
 *       CONNS connections, each a closed loop of NOOP frames (17-byte Clove header + SIZE payload bytes):
 *       send one frame, wait for the whole reply, repeat. With ROUNDS > 0 every connection does ROUNDS
 *       round trips (10% warm-up first); else each runs for SECONDS. Works against the kernel and against
 *       `serve` alike (an echoed NOOP frame is a valid NOOP reply), so both are measured by the same loop.
 *       Prints one JSON line: per-connection counts, elapsed ns and latency percentiles in ns.
 *
 * CPU >= 0 pins the process with sched_setaffinity before anything else; -1 leaves it unpinned.
 * Written by hand because it must be C (a Python client would measure Python) and no packaged tool
 * speaks the Clove frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HDR 17
#define MAGIC 0x41474E54u
#define MAX_SAMPLES (1u << 22)

static void die(const char *what) {
    fprintf(stderr, "uds_pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_un address(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "uds_pingpong: socket path too long: %s\n", path);
        exit(2);
    }
    strcpy(a.sun_path, path);
    return a;
}

static _Noreturn void serve(const char *path) {
    struct sockaddr_un a = address(path);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    unlink(path);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    if (listen(ls, 128) != 0) die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready\n");
    fflush(stdout);
    static char buf[1 << 16];
    struct epoll_event evs[128];
    for (;;) {
        int n = epoll_wait(ep, evs, 128, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, NULL, NULL);
                if (c < 0) continue;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                continue;
            }
            ssize_t got = read(fd, buf, sizeof buf);
            if (got <= 0) {
                close(fd);
                continue;
            }
            for (ssize_t off = 0; off < got;) {
                ssize_t w = write(fd, buf + off, (size_t)(got - off));
                if (w <= 0) break;
                off += w;
            }
        }
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int fd;
    size_t have;      /* reply bytes received so far */
    uint64_t sent_at; /* when the outstanding frame was sent */
    uint64_t done;    /* completed round trips (after warm-up) */
    uint64_t total;   /* completed round trips (all) */
} Conn;

static int client(const char *path, int conns, long rounds, double seconds, int size) {
    signal(SIGPIPE, SIG_IGN);
    size_t frame = HDR + (size_t)size;
    unsigned char *req = malloc(frame), *rep = malloc(frame);
    uint32_t magic = MAGIC, zero = 0;
    uint64_t psize = (uint64_t)size;
    memcpy(req, &magic, 4);
    memcpy(req + 4, &zero, 4);
    req[8] = 0; /* NOOP */
    memcpy(req + 9, &psize, 8);
    for (int i = 0; i < size; i++) req[HDR + i] = (unsigned char)('a' + i % 26);

    struct sockaddr_un a = address(path);
    Conn *cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    long warm = rounds > 0 ? rounds / 10 : 0;
    uint32_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
    size_t ns = 0;
    uint64_t t_start = now_ns(), t_warm = 0;
    uint64_t deadline = rounds > 0 ? UINT64_MAX : t_start + (uint64_t)(seconds * 1e9);
    int active = conns;
    for (int i = 0; i < conns; i++) {
        cs[i].sent_at = now_ns();
        if (write(cs[i].fd, req, frame) != (ssize_t)frame) die("write");
    }
    struct epoll_event evs[256];
    while (active > 0) {
        int n = conns == 1 ? 1 : epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            int i = conns == 1 ? 0 : (int)evs[k].data.u32;
            Conn *c = &cs[i];
            ssize_t got = read(c->fd, rep + c->have, frame - c->have);
            if (got <= 0) {
                fprintf(stderr, "uds_pingpong: connection %d closed by the server\n", i);
                exit(1);
            }
            c->have += (size_t)got;
            if (c->have < frame) continue;
            uint64_t t = now_ns();
            uint32_t rmagic;
            memcpy(&rmagic, rep, 4);
            if (rmagic != MAGIC || memcmp(rep + HDR, req + HDR, (size_t)size) != 0) {
                fprintf(stderr, "uds_pingpong: connection %d got a wrong reply\n", i);
                exit(1);
            }
            c->have = 0;
            c->total++;
            if (c->total > (uint64_t)warm) {
                if (!t_warm) t_warm = t;
                c->done++;
                if (ns < MAX_SAMPLES) {
                    uint64_t d = t - c->sent_at;
                    samples[ns++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
                }
            }
            int more = rounds > 0 ? c->total < (uint64_t)(rounds + warm) : t < deadline;
            if (!more) {
                active--;
                continue;
            }
            c->sent_at = now_ns();
            if (write(c->fd, req, frame) != (ssize_t)frame) die("write");
        }
    }
    uint64_t t_end = now_ns();
    qsort(samples, ns, sizeof *samples, cmp_u32);
#define PCT(p) (ns ? samples[(size_t)((double)(ns - 1) * (p))] : 0)
    printf("{\"conns\": %d, \"size\": %d, \"samples\": %zu, \"elapsed_ns\": %llu, ", conns, size, ns,
           (unsigned long long)(t_end - (t_warm ? t_warm : t_start)));
    printf("\"min_ns\": %u, \"p50_ns\": %u, \"p90_ns\": %u, \"p99_ns\": %u, \"p999_ns\": %u, \"max_ns\": %u, ",
           PCT(0.0), PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), PCT(1.0));
    printf("\"counts\": [");
    for (int i = 0; i < conns; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)cs[i].done);
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "serve") == 0) {
        pin(atoi(argv[3]));
        serve(argv[2]);
    }
    if (argc == 8 && strcmp(argv[1], "client") == 0) {
        pin(atoi(argv[3]));
        int conns = atoi(argv[4]), size = atoi(argv[7]);
        long rounds = atol(argv[5]);
        double seconds = atof(argv[6]);
        if (conns < 1 || conns > 4096 || size < 0 || size > (1 << 20) || (rounds <= 0 && seconds <= 0)) {
            fprintf(stderr, "uds_pingpong client: bad arguments\n");
            return 2;
        }
        return client(argv[2], conns, rounds, seconds, size);
    }
    fprintf(stderr,
            "usage: uds_pingpong serve PATH CPU\n"
            "       uds_pingpong client PATH CPU CONNS ROUNDS SECONDS SIZE\n");
    return 2;
}
